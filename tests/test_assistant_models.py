"""Models and voices per assistant (issue 13, section 1): endpoints in admin, their secrets kept
secret, the job and the config API, the worker building each session's services from them, and
a join no worker could serve refused early or told clearly."""
from __future__ import annotations

import asyncio
import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from assistants.models import AssistantRecord, ModelEndpoint
from voicesessions.models import BotJob, BotWorker

SECRET = "sk-endpoint-secret-7d41c0"
ALL_HOSTED = {"stt": ["openai", "openai-realtime", "deepgram"], "llm": ["openai"],
              "tts": ["openai", "cartesia", "elevenlabs"]}


def endpoint(name: str, stage: str, provider: str = "openai", **fields) -> ModelEndpoint:
    defaults = {} if provider == "local" else {"base_url": "https://api.example.com/v1", "model": "m-1"}
    if stage == "tts" and provider != "local":
        defaults["voice"] = "alloy"
    return ModelEndpoint.objects.create(name=name, stage=stage, provider=provider, **{**defaults, **fields})


def errors_of(make) -> dict:
    with pytest.raises(ValidationError) as caught:
        make()
    return caught.value.message_dict


@pytest.mark.django_db
def test_an_endpoint_is_checked_against_what_its_stage_can_run():
    assert "provider" in errors_of(lambda: endpoint("a", "llm", "deepgram"))
    assert "base_url" in errors_of(lambda: endpoint("b", "stt", "local", base_url="https://x"))
    assert "base_url" in errors_of(lambda: endpoint("c", "llm", base_url="ftp://x"))
    assert "model" in errors_of(lambda: endpoint("d", "llm", model=""))
    assert "api_key" in errors_of(lambda: endpoint("e", "stt", "deepgram"))  # a streaming provider needs a key
    assert "api_key" in errors_of(lambda: endpoint("f", "llm", flavor="groq"))
    assert "api_key_env" in errors_of(lambda: endpoint("g", "llm", api_key=SECRET, api_key_env="LLM_KEY"))
    assert "api_key_env" in errors_of(lambda: endpoint("h", "llm", api_key_env="not a name"))
    assert "flavor" in errors_of(lambda: endpoint("i", "tts", flavor="groq"))
    assert "voice" in errors_of(lambda: endpoint("j", "tts", "cartesia", api_key=SECRET, voice="alloy"))
    assert "voice" in errors_of(lambda: endpoint("k", "tts", voice=""))
    endpoint("ok-llm", "llm", flavor="ollama")  # a keyless server: no key needed
    endpoint("ok-tts", "tts", "cartesia", api_key=SECRET, voice="a0e99841-438c-4a64-b679-ae501e7d6091")
    assert ModelEndpoint.objects.count() == 2


@pytest.mark.django_db
def test_an_assistant_names_endpoints_of_the_right_stage_and_a_voice_they_take(assistant):
    llm, local_stt = endpoint("groq", "llm", api_key=SECRET), endpoint("whisper", "stt", "local")
    cartesia = endpoint("cartesia", "tts", "cartesia", api_key=SECRET, voice="a0e99841-438c-4a64-b679-ae501e7d6091")
    assistant.stt_endpoint = llm
    assert "stt_endpoint" in errors_of(assistant.save)
    assistant.stt_endpoint, assistant.stt_model = local_stt, "large-v3"
    assert "stt_model" in errors_of(assistant.save)  # the local endpoint has one model
    assistant.stt_model, assistant.tts_endpoint, assistant.voice = "", cartesia, "coral"
    assert "voice" in errors_of(assistant.save)
    assistant.voice = "79a125e8-cd45-4c13-8a67-188112f4dd22"
    assistant.llm_endpoint, assistant.llm_temperature = llm, 3.5
    assert "llm_temperature" in errors_of(assistant.save)
    assistant.llm_temperature, assistant.llm_max_tokens = 0.3, 8
    assert "llm_max_tokens" in errors_of(assistant.save)
    assistant.llm_max_tokens = 120
    assistant.save()
    llm.enabled = False
    llm.save()
    assistant.refresh_from_db()
    assert "llm_endpoint" in errors_of(assistant.save)  # turned off: no new choice of it


@pytest.mark.django_db
def test_the_job_and_the_config_api_carry_the_choices_and_never_the_key(api, assistant):
    assistant.llm_endpoint = endpoint("groq", "llm", api_key=SECRET, flavor="groq", model="llama-3.3-70b")
    assistant.llm_model, assistant.llm_temperature, assistant.llm_max_tokens = "llama-3.1-8b", 0.4, 90
    assistant.tts_endpoint = endpoint("speech", "tts", api_key_env="SPEECH_KEY", voice="nova")
    assistant.voice, assistant.voice_speed = "coral", 1.25
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    join = api.post("/api/bot/join", {"assistant": "pearl"}, format="json")
    assert join.status_code == 202, join.content
    payload = BotJob.objects.get(pk=join.json()["jobId"]).payload
    assert SECRET not in json.dumps(payload)
    assert payload["models"]["llm"] == {"endpoint": "groq", "provider": "openai", "flavor": "groq",
                                        "baseUrl": "https://api.example.com/v1", "model": "llama-3.1-8b",
                                        "keyEnv": "", "hasKey": True, "temperature": 0.4, "maxTokens": 90}
    assert payload["models"]["tts"]["keyEnv"] == "SPEECH_KEY" and payload["models"]["stt"] == {}
    assert payload["voice"] == "coral" and payload["voice_parameters"] == {"speed": 1.25}

    config = api.get("/api/voice/config", {"assistant": "pearl"})
    assert config.status_code == 200
    assert config.json()["models"] == {
        "stt": {"provider": "default", "model": ""},
        "llm": {"provider": "openai", "model": "llama-3.1-8b", "temperature": 0.4, "maxTokens": 90},
        "tts": {"provider": "openai", "model": "m-1", "voice": "coral", "speed": 1.25}}
    assert SECRET not in config.content.decode() and "example.com" not in config.content.decode()


def _live_worker(offers: dict) -> None:
    BotWorker.objects.create(worker_id=f"w-{BotWorker.objects.count()}", hostname="h", pid=1,
                             control_url="http://127.0.0.1:1", offers=offers, heartbeat_at=timezone.now())


@pytest.mark.django_db
def test_a_join_no_live_worker_could_serve_is_refused_with_the_reason(api, assistant):
    assistant.llm_endpoint = endpoint("local-llm", "llm", "local")
    assistant.tts_endpoint = endpoint("cartesia", "tts", "cartesia", api_key=SECRET,
                                      voice="a0e99841-438c-4a64-b679-ae501e7d6091")
    assistant.voice = ""
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    _live_worker(ALL_HOSTED)  # a worker on hosted models only: it loaded no local LLM
    join = api.post("/api/bot/join", {"assistant": "pearl"}, format="json")
    assert join.status_code == 422
    assert join.json()["error"] == "provider_unavailable"
    assert "local-llm" in join.json()["fields"]["assistant"][0]
    assert not BotJob.objects.exists()

    _live_worker({**ALL_HOSTED, "llm": ["local", "openai"]})  # one that runs it comes up
    bad_voice = api.post("/api/bot/join", {"assistant": "pearl", "voice": "coral"}, format="json")
    assert bad_voice.status_code == 422 and "voice" in bad_voice.json()["fields"]
    assert api.post("/api/bot/join", {"assistant": "pearl"}, format="json").status_code == 202


@pytest.mark.django_db
def test_with_no_live_worker_the_join_is_queued(api, assistant):
    assistant.llm_endpoint = endpoint("local-llm", "llm", "local")
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    assert api.post("/api/bot/join", {"assistant": "pearl"}, format="json").status_code == 202


# --- the admin: the key is write-only ------------------------------------------------------------

ADD_ENDPOINT = "/admin/assistants/modelendpoint/add/"


def _endpoint_form(**fields) -> dict:
    return {"name": "hosted-llm", "stage": "llm", "provider": "openai", "flavor": "openai",
            "base_url": "https://api.openai.com/v1", "model": "gpt-4.1-mini", "voice": "", "api_key": SECRET,
            "api_key_env": "", "enabled": "on", **fields}


@pytest.mark.django_db
def test_the_admin_stores_the_key_and_never_shows_it_again(admin_client):
    res = admin_client.post(ADD_ENDPOINT, _endpoint_form())
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    row = ModelEndpoint.objects.get(name="hosted-llm")
    assert row.api_key == SECRET
    change = f"/admin/assistants/modelendpoint/{row.pk}/change/"
    for page in (change, "/admin/assistants/modelendpoint/"):
        body = admin_client.get(page).content.decode()
        assert SECRET not in body and "hosted-llm" in body
    assert "stored key" in admin_client.get("/admin/assistants/modelendpoint/").content.decode()
    # Saved again with the key left blank: kept. Asked to remove it (and name a variable): gone.
    res = admin_client.post(change, _endpoint_form(api_key="", model="gpt-4.1"))
    assert res.status_code == 302
    row.refresh_from_db()
    assert (row.api_key, row.model) == (SECRET, "gpt-4.1")
    res = admin_client.post(change, _endpoint_form(api_key="", clear_api_key="on", api_key_env="OPENAI_KEY"))
    assert res.status_code == 302
    row.refresh_from_db()
    assert (row.api_key, row.api_key_env) == ("", "OPENAI_KEY")
    res = admin_client.post(ADD_ENDPOINT, _endpoint_form(name="bad", provider="deepgram"))
    assert res.status_code == 200 and "provider" in res.context["adminform"].form.errors


@pytest.mark.django_db
def test_the_assistant_form_has_the_models_and_voice_settings(admin_client):
    body = admin_client.get("/admin/assistants/assistantrecord/add/").content.decode()
    for name in ("stt_endpoint", "stt_model", "llm_endpoint", "llm_model", "llm_temperature", "llm_max_tokens",
                 "tts_endpoint", "tts_model", "voice_speed"):
        assert f'name="{name}"' in body, name


# --- the worker: each session's services from its assistant ------------------------------------

def _bundle(**fields):
    from voicebot.services import ModelBundle

    return ModelBundle(**{"stt_model": object(), "tts_engine": object(), "llm_server": object(), **fields})


@pytest.mark.django_db
def test_the_worker_points_the_assistants_stages_at_its_endpoints(monkeypatch):
    from voicebot.services.assistant_models import for_models, offers

    row = endpoint("groq", "llm", api_key=SECRET, flavor="groq")
    speech = endpoint("speech", "tts", api_key_env="SPEECH_KEY", voice="nova", model="tts-1")
    monkeypatch.setenv("SPEECH_KEY", "sk-from-the-environment")
    base = _bundle()
    assert offers(base) == {"stt": ["local", *ALL_HOSTED["stt"]], "llm": ["local", "openai"],
                            "tts": ["local", *ALL_HOSTED["tts"]]}
    assert for_models(base, {}) is base
    spec = {"stt": {}, "llm": {**row.job_spec("llama-3.1-8b"), "temperature": 0.2, "maxTokens": 64},
            "tts": speech.job_spec()}
    derived = for_models(base, spec)
    assert (derived.llm_base_url, derived.llm_api_key, derived.llm_model, derived.llm_flavor) == (
        "https://api.example.com/v1", SECRET, "llama-3.1-8b", "groq")
    assert not derived.local_llm and derived.llm_temperature == 0.2 and derived.llm_reply_tokens == 64
    assert (derived.tts_provider, derived.tts_api.api_key, derived.tts_api.model, derived.tts_voice) == (
        "openai", "sk-from-the-environment", "tts-1", "nova")
    assert derived.stt_model is base.stt_model and derived.http_clients is base.http_clients
    assert base.local_llm and base.tts_api is None  # the worker's own bundle is untouched
    assert SECRET not in repr(derived.llm_api)


@pytest.mark.django_db
def test_the_worker_says_which_stage_it_cannot_run(monkeypatch):
    from voicebot.services.assistant_models import UnsupportedModels, for_models

    monkeypatch.delenv("SPEECH_KEY", raising=False)
    hosted_only = _bundle(llm_server=None)
    with pytest.raises(UnsupportedModels) as caught:
        for_models(hosted_only, {"llm": endpoint("qwen", "llm", "local").job_spec()})
    assert caught.value.stage == "llm" and "qwen" in str(caught.value) and "does not run local" in str(caught.value)
    with pytest.raises(UnsupportedModels, match=r"\$SPEECH_KEY is not set"):
        for_models(hosted_only, {"tts": endpoint("speech", "tts", api_key_env="SPEECH_KEY").job_spec()})


@pytest.mark.django_db
def test_the_session_llm_gets_the_assistants_temperature_and_answer_budget():
    from voicebot.services.assistant_models import for_models

    derived = for_models(_bundle(), {"llm": {**endpoint("hosted", "llm").job_spec(), "temperature": 0.3,
                                             "maxTokens": 50}})

    async def build():
        llm = derived.make_llm(system_prompt="Be brief.")
        await derived.aclose()
        return llm

    llm = asyncio.run(build())
    assert llm._settings.temperature == 0.3 and llm.reply_tokens == 50 and llm._settings.model == "m-1"


# --- end to end: a worker whose defaults are one API, an assistant on another ---------------------

@pytest.mark.server
@pytest.mark.timeout(240)
def test_a_session_talks_through_its_assistants_own_llm_and_voice(tmp_path):
    from tests.botharness import active_session, hosted_stack, is_final_transcript
    from tests.fakes.openai_api import FakeOpenAI

    default_key, own_key = "sk-worker-default-5a1b", "sk-assistant-own-93e2"
    with FakeOpenAI(api_key=default_key) as default, FakeOpenAI(api_key=own_key, max_speech_seconds=1.0) as own:
        setup = (f"llm = E.objects.create(name='own-llm', stage='llm', provider='openai', base_url='{own.url}', "
                 f"model='gpt-4.1-nano', api_key='{own_key}'); "
                 f"tts = E.objects.create(name='own-voice', stage='tts', provider='openai', base_url='{own.url}', "
                 "model='tts-1', voice='nova', api_key_env='OWN_TTS_KEY'); "
                 "a = A.objects.get(slug='pearl'); a.llm_endpoint = llm; a.llm_temperature = 0.3; "
                 "a.tts_endpoint = tts; a.voice = 'coral'; a.voice_speed = 1.25; a.save()")
        # The voice's key lives in the workers' environment.
        with hosted_stack(tmp_path, default.url, default_key, setup=setup, env={"OWN_TTS_KEY": own_key}
                          ) as (server, worker):
            async def scenario() -> dict:
                client, peer, _session_id = await active_session(server, persistence=2, expect_new=True)
                await client.ws.send(json.dumps({"type": "user-message", "content": "Say hello to me."}))
                answer = await client.wait_for(is_final_transcript("assistant"), 30, "the assistant's answer")
                await client.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"]["speaking"],
                                      30, "the answer spoken")
                await peer.close()
                await client.close()
                return answer

            answer = asyncio.run(scenario())
        assert "hello to me" in answer["payload"]["text"].lower()  # the fake echoes what it was asked
        chat = own.requests_to("/v1/chat/completions", ok=True)
        assert chat and chat[0].json["model"] == "gpt-4.1-nano" and chat[0].json["temperature"] == 0.3
        speech = own.requests_to("/v1/audio/speech", ok=True)
        assert speech and all((r.json["voice"], r.json["speed"], r.json["model"]) == ("coral", 1.25, "tts-1")
                              for r in speech)
        assert not default.requests_to("/v1/chat/completions") and not default.requests_to("/v1/audio/speech")
        worker.log.seek(0)
        log = worker.log.read()
        assert "own-llm" in log and own_key not in log


@pytest.mark.server
@pytest.mark.timeout(240)
def test_a_worker_that_cannot_run_the_assistants_voice_tells_the_user_which(tmp_path):
    from tests.botharness import Client, hosted_stack
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-worker-default-77c0"
    setup = ("tts = E.objects.create(name='studio-voice', stage='tts', provider='openai', "
             "base_url='https://speech.example.com/v1', model='tts-1', voice='nova', api_key_env='STUDIO_TTS_KEY'); "
             "a = A.objects.get(slug='pearl'); a.tts_endpoint = tts; a.voice = ''; a.save()")
    # STUDIO_TTS_KEY is not in the worker's environment.
    with FakeOpenAI(api_key=key) as default, hosted_stack(tmp_path, default.url, key, setup=setup) as (server, _w):
        async def scenario() -> dict:
            client = Client(server)
            await client.open_ws()
            client.http.post("/api/voice/room", json={"assistant": "pearl"})
            join = client.http.post("/api/bot/join", json={"assistant": "pearl"})
            assert join.status_code == 202, join.text  # every worker runs hosted voices: nothing to refuse yet
            error = await client.wait_for(lambda e: e["type"] == "voice.error", 30, "the voice.error")
            await client.wait_for(lambda e: e["type"] == "voice.session.status"
                                  and e["payload"]["status"] == "unavailable", 10, "the session unavailable")
            await client.close()
            return error["payload"]

        error = asyncio.run(scenario())
    assert error["code"] == "provider_unavailable" and error["stage"] == "tts" and error["fatal"] is True
    assert "studio-voice" in error["message"] and "$STUDIO_TTS_KEY is not set" in error["message"]
