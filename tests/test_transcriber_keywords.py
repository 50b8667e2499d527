"""An assistant's transcriber keywords (VAPI's transcriber `keywords` / `keyterm`): names and terms
its users say that a transcriber would otherwise mishear. Kept in admin, carried by the job, given
to every transcriber the way it takes them, and heard by the offline Whisper."""
from __future__ import annotations

import asyncio
import subprocess
import wave
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from assistants.models import MAX_STT_KEYWORDS, AssistantRecord
from voicesessions.models import BotJob

ADD_ASSISTANT = "/admin/assistants/assistantrecord/add/"


@pytest.mark.django_db
def test_the_keywords_are_cleaned_and_bad_ones_named(assistant):
    assistant.stt_keywords = ["  Nuvexa ", "acme   cloud", "NUVEXA", "Zorblax Pro"]
    assistant.save()
    assistant.refresh_from_db()
    assert assistant.stt_keywords == ["Nuvexa", "acme cloud", "Zorblax Pro"]  # spaces squeezed, repeats dropped
    for bad in ["Nuvexa", ["Nuvexa", ""], ["Nuvexa", 3], ["Nuvexa:2"], ["one two three four five six seven"],
                ["x" * 61], [f"word{i}" for i in range(MAX_STT_KEYWORDS + 1)]]:
        assistant.stt_keywords = bad
        with pytest.raises(ValidationError) as caught:
            assistant.save()
        assert list(caught.value.message_dict) == ["stt_keywords"], bad


@pytest.mark.django_db
def test_the_admin_edits_the_keywords_and_names_a_bad_list(admin_client):
    from tests.test_admin import add_form_data

    res = admin_client.post(ADD_ASSISTANT, add_form_data(stt_keywords='["Nuvexa", " Zorblax  Pro "]'))
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    assert AssistantRecord.objects.get(slug="nova").stt_keywords == ["Nuvexa", "Zorblax Pro"]
    res = admin_client.post(ADD_ASSISTANT, add_form_data(slug="cleared", stt_keywords=""))  # the box emptied
    assert res.status_code == 302 and AssistantRecord.objects.get(slug="cleared").stt_keywords == []
    res = admin_client.post(ADD_ASSISTANT, add_form_data(slug="bad", stt_keywords='["Nuvexa:3"]'))
    assert res.status_code == 200 and "intensifier" in str(res.context["adminform"].form.errors["stt_keywords"])


@pytest.mark.django_db
def test_the_join_carries_the_keywords_and_the_worker_tells_its_whisper(api, assistant):
    from voicebot.services import ModelBundle
    from voicebot.services.assistant_models import for_models

    assistant.stt_keywords = ["Nuvexa", "Zorblax Pro"]
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    join = api.post("/api/bot/join", {"assistant": "pearl"}, format="json")
    assert join.status_code == 202, join.content
    models = BotJob.objects.get(pk=join.json()["jobId"]).payload["models"]
    assert models["stt"] == {"keywords": ["Nuvexa", "Zorblax Pro"]}

    session = for_models(ModelBundle(stt_model=object()), models)  # the worker's default transcriber, told more
    assert session.stt_keywords == ("Nuvexa", "Zorblax Pro") and session.stt_provider == "local"
    assert session.make_stt(name="Pearl").hotwords == "A call with Pearl about Nuvexa and Zorblax Pro."
    assert ModelBundle(stt_model=object()).make_stt(name="Pearl").hotwords == "Pearl"  # another assistant's


def test_the_keywords_are_told_as_a_sentence_not_a_list():
    """Whisper follows the prompt's style: a bare list came back as lists and repeats (docs/benchmarks.md)."""
    from django.test import override_settings

    from voicebot.services import ModelBundle, transcriber_prompt

    assert transcriber_prompt("Pearl") == "Pearl" and transcriber_prompt("") == ""
    assert transcriber_prompt("Pearl", ["Nuvexa"]) == "A call with Pearl about Nuvexa."
    assert transcriber_prompt("", ["Nuvexa", "Quillo", "Zorblax Pro"]) == "A call about Nuvexa, Quillo and Zorblax Pro."
    local = ModelBundle(stt_model=object(), stt_keywords=("pearl", "Nuvexa"))
    assert local.make_stt(name="Pearl").hotwords == "A call with Pearl about Nuvexa."  # the name once
    with override_settings(VOICE_STT_NAME_HINT=False):
        assert local.make_stt(name="Pearl").hotwords == "A call about pearl and Nuvexa."  # the admin's list stands


def _speech(tmp_path: Path, text: str) -> bytes:
    raw, wav = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes())


def test_the_offline_whisper_hears_a_keyword_it_would_not_know(tmp_path):
    """A product name Whisper never heard: "My movement's a card was charged twice." untold."""
    from voicebot.services import ModelBundle
    from voicebot.services.stt import load_whisper

    whisper = load_whisper()
    speech = _speech(tmp_path, "My Nuvexa card was charged twice.")
    told = ModelBundle(stt_model=whisper, stt_keywords=("Nuvexa",)).make_stt(name="Pearl")
    untold = ModelBundle(stt_model=whisper).make_stt(name="Pearl")
    assert "nuvexa" in told._transcribe(speech).lower()
    assert "nuvexa" not in untold._transcribe(speech).lower()  # what the keywords are for


@pytest.mark.django_db
def test_the_hosted_transcription_api_gets_the_keywords_in_its_prompt(assistant):
    from tests.fakes.openai_api import FakeOpenAI
    from tests.test_hosted_services import STT_KEY, _wav
    from voicebot.services import ModelBundle
    from voicebot.services.hosted import HostedAPI

    with FakeOpenAI(api_key=STT_KEY) as fake:
        bundle = ModelBundle(stt_api=HostedAPI(base_url=fake.url, api_key=STT_KEY, model="gpt-4o-transcribe"),
                             stt_keywords=("Nuvexa", "Zorblax Pro"))

        async def run() -> str:
            try:
                return (await bundle.make_stt(language="en", name="Pearl")._transcribe(_wav())).text
            finally:
                await bundle.aclose()

        assert asyncio.run(run()) == "what notes do I have"
        (request,) = fake.requests_to("/v1/audio/transcriptions", ok=True)
    assert request.form.get("prompt") == ["A call with Pearl about Nuvexa and Zorblax Pro."]
