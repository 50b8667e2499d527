"""Hosted STT / LLM / TTS through Pipecat's own OpenAI service classes, against a fake OpenAI API.

The fake (tests/fakes/openai_api.py) is a real HTTP server that checks each
request against OpenAI's documented API, so these tests exercise the exact
bytes Pipecat's services would send to the hosted provider.
"""
from __future__ import annotations

import asyncio
import io
import json
import time
import wave

import httpx
import pytest
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService

from tests.fakes.openai_api import PCM_RATE, FakeOpenAI
from tests.waiting import heard_answer
from voicebot.services import ModelBundle, load_bundle
from voicebot.services.hosted import HostedConfigError
from voicebot.services.llm import VoiceLLMService
from voicebot.tools import TOOLS

STT_KEY, LLM_KEY, TTS_KEY = "sk-test-stt-5f1c", "sk-test-llm-9a7e", "sk-test-tts-2b3d"


@pytest.fixture
def fake():
    with FakeOpenAI(api_key=STT_KEY) as api:
        yield api


def hosted_settings(settings, url: str, *, stt_key: str = STT_KEY, llm_key: str = STT_KEY,
                    tts_key: str = STT_KEY) -> None:
    settings.VOICE_STT, settings.VOICE_LLM, settings.VOICE_TTS = "openai", "openai", "openai"
    settings.VOICE_STT_BASE_URL = settings.VOICE_LLM_BASE_URL = settings.VOICE_TTS_BASE_URL = url
    settings.VOICE_STT_API_KEY, settings.VOICE_LLM_API_KEY, settings.VOICE_TTS_API_KEY = stt_key, llm_key, tts_key
    settings.VOICE_STT_MODEL, settings.VOICE_LLM_MODEL = "gpt-4o-transcribe", "gpt-4.1-mini"
    settings.VOICE_TTS_MODEL, settings.VOICE_TTS_VOICE = "gpt-4o-mini-tts", "alloy"


def _no_local_models(monkeypatch) -> None:
    """Make any local model load fail loudly."""
    from voicebot.services import llm, stt, tts

    def boom(*_a, **_k):
        raise AssertionError("a local model was loaded although the stage is hosted")

    monkeypatch.setattr(stt, "load_whisper", boom)
    monkeypatch.setattr(tts, "load_hibari", boom)
    monkeypatch.setattr(llm, "start_local_server", boom)


def _wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x10" * int(rate * seconds))
    return out.getvalue()


# --- (a) the bundle and its factories ------------------------------------------------

def test_hosted_bundle_loads_no_local_model_and_builds_pipecats_own_services(settings, monkeypatch, fake):
    hosted_settings(settings, fake.url)
    _no_local_models(monkeypatch)
    started = time.monotonic()
    bundle = load_bundle()
    assert time.monotonic() - started < 5
    assert bundle.stt_model is None and bundle.tts_engine is None and bundle.llm_server is None
    assert bundle.tts_sample_rate == 24000  # OpenAI's "pcm": the pipeline's audio_out_sample_rate
    assert STT_KEY not in repr(bundle)

    stt = bundle.make_stt(language="en")
    assert isinstance(stt, OpenAISTTService)  # Pipecat's, which can leave the language to the provider
    assert stt._settings.model == "gpt-4o-transcribe" and stt._settings.language == "en"
    assert str(stt._client.base_url).rstrip("/") == fake.url and stt._client.api_key == STT_KEY

    llm = bundle.make_llm(system_prompt="Be brief.")
    assert isinstance(llm, OpenAILLMService) and isinstance(llm, VoiceLLMService)
    assert llm.notes_router is False  # a hosted model gets the tool definitions (native tool calling)
    assert str(llm._client.base_url).rstrip("/") == fake.url

    tts = bundle.make_tts(voice="default", parameters={})
    assert isinstance(tts, OpenAITTSService)  # Pipecat's, taking any voice id (AnyVoiceTTSService)
    assert tts._init_sample_rate == 24000
    assert tts._settings.voice == "alloy" and tts._settings.model == "gpt-4o-mini-tts"
    nova = bundle.make_tts(voice="nova", parameters={"speed": 9})
    assert nova._settings.voice == "nova" and nova._settings.speed == 4.0  # clamped to the documented range
    assert not fake.requests  # building services calls nothing


def test_each_stage_is_chosen_on_its_own(settings, monkeypatch, fake):
    """Hosted STT and TTS beside the local LLM: only the llama.cpp server starts."""
    from voicebot.services import llm

    hosted_settings(settings, fake.url)
    settings.VOICE_LLM = "local"
    _no_local_models(monkeypatch)
    monkeypatch.setattr(llm, "start_local_server", lambda path=None, **_kw: ("server", "http://127.0.0.1:1/v1"))
    bundle = load_bundle()
    assert bundle.llm_server == "server" and bundle.local_llm is True
    assert bundle.stt_model is None and bundle.tts_engine is None
    assert bundle.make_llm(system_prompt="x").notes_router is True


@pytest.mark.parametrize("name, value, error", [
    ("VOICE_STT_API_KEY", "", "VOICE_STT=openai needs VOICE_STT_API_KEY"),
    ("VOICE_LLM_API_KEY", "", "VOICE_LLM=openai needs VOICE_LLM_API_KEY"),
    ("VOICE_TTS_API_KEY", "", "VOICE_TTS=openai needs VOICE_TTS_API_KEY"),
    ("VOICE_TTS_VOICE", "default", "VOICE_TTS_VOICE must be one of"),
])
def test_unusable_hosted_settings_fail_before_anything_loads(settings, monkeypatch, fake, name, value, error):
    hosted_settings(settings, fake.url)
    if name.startswith("VOICE_TTS"):  # only OpenAI's own voices on OpenAI (a self-hosted server has its own)
        settings.VOICE_TTS_BASE_URL = "https://api.openai.com/v1"
    if name.endswith("_API_KEY"):  # OpenAI itself needs a key (a keyless server does not)
        setattr(settings, name.replace("_API_KEY", "_BASE_URL"), "https://api.openai.com/v1")
    setattr(settings, name, value)
    _no_local_models(monkeypatch)
    with pytest.raises(HostedConfigError, match=error):
        load_bundle()


def test_a_keyless_server_gets_a_placeholder_key_and_the_configured_headers(settings, monkeypatch):
    """Ollama, vLLM and llama.cpp's server want no key; gateways and OpenAI projects want headers."""
    with FakeOpenAI(api_key=None) as keyless:
        hosted_settings(settings, keyless.url, llm_key="")
        settings.VOICE_LLM_ORGANIZATION, settings.VOICE_LLM_PROJECT = keyless.organization, "proj_voice"
        settings.VOICE_LLM_HEADERS = {"X-Gateway-Team": "voice"}
        monkeypatch.setenv("OPENAI_API_KEY", "sk-must-never-be-sent")
        bundle = load_bundle()
        assert "X-Gateway-Team" not in repr(bundle.llm_api)  # headers may carry secrets: not in logs
        llm = bundle.make_llm(system_prompt="Be brief.")
        context = LLMContext(messages=[{"role": "user", "content": "Hello"}])

        async def ask() -> None:
            async for _chunk in await llm.get_chat_completions(context):
                pass
            await bundle.aclose()

        asyncio.run(ask())
        (request,) = keyless.requests_to("/v1/chat/completions", ok=True)
        assert request.headers["authorization"] == "Bearer no-key"
        assert request.headers["openai-organization"] == keyless.organization
        assert request.headers["openai-project"] == "proj_voice"
        assert request.headers["x-gateway-team"] == "voice"


def test_openai_refuses_an_organization_the_key_is_not_in(settings, fake):
    hosted_settings(settings, fake.url)
    settings.VOICE_LLM_ORGANIZATION = "org-SomeoneElse123"
    bundle = load_bundle()
    llm = bundle.make_llm(system_prompt="Be brief.")

    async def ask() -> None:
        async for _chunk in await llm.get_chat_completions(LLMContext(messages=[{"role": "user", "content": "Hi"}])):
            pass

    import openai
    with pytest.raises(openai.AuthenticationError, match="mismatched_organization|should match"):
        asyncio.run(ask())


def test_stream_options_can_be_left_out_for_a_server_that_refuses_them(settings):
    with FakeOpenAI(api_key=LLM_KEY, refuse_stream_options=True) as old_server:
        hosted_settings(settings, old_server.url, llm_key=LLM_KEY)
        context = LLMContext(messages=[{"role": "user", "content": "Hello"}])

        async def ask() -> str:
            bundle = load_bundle()
            try:
                chunks = [c async for c in await bundle.make_llm(system_prompt="Be brief.").get_chat_completions(
                    context)]
                return "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
            finally:
                await bundle.aclose()

        import openai
        with pytest.raises(openai.BadRequestError, match="stream_options"):
            asyncio.run(ask())
        settings.VOICE_LLM_STREAM_USAGE = False
        assert asyncio.run(ask()).startswith("You said: Hello")
        refused, answered = old_server.requests_to("/v1/chat/completions")
        assert "stream_options" in refused.json and "stream_options" not in answered.json


def test_tools_can_be_kept_from_a_server_and_the_router_used(settings, fake):
    hosted_settings(settings, fake.url)
    settings.VOICE_LLM_TOOLS = "router"
    llm = load_bundle().make_llm(system_prompt="Be brief.")
    assert llm.notes_router is True and llm.local is False  # no llama.cpp-only fields to a hosted server
    settings.VOICE_LLM_TOOLS = "sometimes"
    with pytest.raises(HostedConfigError, match="VOICE_LLM_TOOLS must be native or router"):
        load_bundle()


@pytest.mark.parametrize("headers", ['["not", "an", "object"]', '{"X-Count": 3}'])
def test_headers_must_be_a_json_object_of_strings(settings, fake, headers):
    hosted_settings(settings, fake.url)
    settings.VOICE_LLM_HEADERS = json.loads(headers)
    with pytest.raises(HostedConfigError, match="VOICE_LLM_HEADERS"):
        load_bundle()


def test_unknown_provider_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.VOICE_STT = "deepgram"
    with pytest.raises(ImproperlyConfigured, match="VOICE_STT"):
        load_bundle()


# --- Pipecat's services against the fake's checks ------------------------------------------

def test_pipecats_stt_request_passes_the_documented_checks(fake):
    bundle = ModelBundle()
    from voicebot.services.hosted import HostedAPI

    bundle.stt_api = HostedAPI(base_url=fake.url, api_key=STT_KEY, model="gpt-4o-transcribe")
    stt = bundle.make_stt(language="en")
    result = asyncio.run(stt._transcribe(_wav()))
    assert result.text == "what notes do I have"
    (request,) = fake.requests_to("/v1/audio/transcriptions", ok=True)
    assert request.headers["authorization"] == f"Bearer {STT_KEY}"
    assert request.form["model"] == ["gpt-4o-transcribe"] and request.form["language"] == ["en"]
    assert request.files["file"].filename.endswith(".wav")
    assert request.files["file"].wav_format()["rate"] == 16000


@pytest.mark.parametrize("language, sent", [("auto", None), ("", None), ("tlh", None), ("de", "de"),
                                             ("pt-BR", "pt")])
def test_the_transcription_language_is_the_sessions_or_left_to_the_provider(fake, language, sent):
    """"auto" used to become English; OpenAI detects the language when the field is left out."""
    from voicebot.services.hosted import HostedAPI

    bundle = ModelBundle()
    bundle.stt_api = HostedAPI(base_url=fake.url, api_key=STT_KEY, model="gpt-4o-transcribe")

    async def run() -> str:
        try:
            return (await bundle.make_stt(language=language)._transcribe(_wav())).text
        finally:
            await bundle.aclose()

    assert asyncio.run(run()) == "what notes do I have"
    (request,) = fake.requests_to("/v1/audio/transcriptions", ok=True)
    assert request.form.get("language") == ([sent] if sent else None)


@pytest.mark.parametrize("hint, model, sent", [(True, "gpt-4o-transcribe", ["Pearl"]), (False, "gpt-4o-transcribe", None),
                                                (True, "gpt-4o-transcribe-diarize", None)])
def test_the_assistants_name_goes_to_the_transcription_api_as_its_prompt(fake, hint, model, sent):
    """OpenAI's guide gives the prompt for names the model would spell wrong; VOICE_STT_NAME_HINT=0 sends
    none, nor does the diarizing model get one (it refuses it)."""
    from django.test import override_settings

    from voicebot.services.hosted import HostedAPI

    bundle = ModelBundle()
    bundle.stt_api = HostedAPI(base_url=fake.url, api_key=STT_KEY, model=model)

    async def run() -> str:
        try:
            return (await bundle.make_stt(language="en", name="Pearl")._transcribe(_wav())).text
        finally:
            await bundle.aclose()

    with override_settings(VOICE_STT_NAME_HINT=hint):
        assert asyncio.run(run()) == "what notes do I have"
    (request,) = fake.requests_to("/v1/audio/transcriptions", ok=True)
    assert request.form.get("prompt") == sent


def test_the_fake_refuses_a_prompt_to_the_diarizing_model_as_openai_documents(fake):
    import httpx

    def post(model: str) -> httpx.Response:
        return httpx.post(f"{fake.url}/audio/transcriptions", headers={"Authorization": f"Bearer {STT_KEY}"},
                          data={"model": model, "prompt": "Pearl"}, files={"file": ("a.wav", _wav(), "audio/wav")})

    refused = post("gpt-4o-transcribe-diarize")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "prompt"
    assert post("gpt-4o-transcribe").status_code == 200


def test_pipecats_llm_request_carries_the_notes_tools_and_streams_a_tool_call(fake):
    llm = VoiceLLMService(base_url=fake.url, api_key=STT_KEY, model="gpt-4.1-mini", system_prompt="Be brief.",
                          notes_router=False)
    context = LLMContext(messages=[{"role": "user", "content": "What notes do I have?"}], tools=TOOLS)

    async def stream() -> list:
        chunks = await llm.get_chat_completions(context)
        return [chunk async for chunk in chunks]

    chunks = asyncio.run(stream())
    calls = [c for chunk in chunks for choice in chunk.choices for c in (choice.delta.tool_calls or [])]
    assert calls[0].function.name == "list_notes"
    assert [choice.finish_reason for chunk in chunks for choice in chunk.choices][-1] == "tool_calls"
    (request,) = fake.requests_to("/v1/chat/completions", ok=True)
    body = request.json
    assert body["stream"] is True and body["model"] == "gpt-4.1-mini"
    assert {t["function"]["name"] for t in body["tools"]} == {"create_note", "list_notes", "read_note",
                                                              "update_note", "delete_note", "search_notes"}
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in body["tools"])
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_each_stage_shares_one_client_per_worker_with_a_live_call_timeout(settings, fake):
    """Sessions share their stage's HTTP client (Pipecat built three per connection, never closed),
    with VOICE_HOSTED_TIMEOUT and no retries instead of the SDK's 600 s and 2 retries."""
    hosted_settings(settings, fake.url)
    settings.VOICE_HOSTED_TIMEOUT, settings.VOICE_HOSTED_CONNECT_TIMEOUT = 4.0, 1.5
    bundle = load_bundle()

    async def run() -> None:
        for make in (bundle.make_stt, lambda: bundle.make_llm(system_prompt="Be brief."),
                     lambda: bundle.make_tts(voice="alloy")):
            first, second = make(), make()
            assert first._client._client is second._client._client  # AsyncOpenAI -> its HTTP client
            assert (first._client.timeout.read, first._client.timeout.connect) == (4.0, 1.5)
            assert first._client.max_retries == 0
        shared = list(bundle.http_clients.values())
        assert len(shared) == 3
        await bundle.aclose()  # the worker's shutdown
        assert all(client.is_closed for client in shared)

    asyncio.run(run())


@pytest.mark.timeout(60)
def test_a_hanging_transcription_or_speech_request_is_given_up_and_the_next_is_served(settings, fake):
    """A stuck upload fails after VOICE_HOSTED_TIMEOUT, once, and the next turn's request is answered."""
    import openai

    hosted_settings(settings, fake.url)
    settings.VOICE_HOSTED_TIMEOUT = 1.0
    bundle = load_bundle()

    async def speech(tts) -> bytes:
        return b"".join([f.audio async for f in tts.run_tts("Hello there.", "turn-1") if hasattr(f, "audio")])

    async def run() -> None:
        stt, tts = bundle.make_stt(), bundle.make_tts(voice="alloy")
        tts._sample_rate = tts._init_sample_rate  # as the pipeline's start sets it (chunk sizes follow it)
        # 20 s is far more than 1 s and far less than the SDK's defaults (600 s, tried 3 times).
        fake.hang_next(1, 60)
        with pytest.raises(openai.APITimeoutError):
            await asyncio.wait_for(stt._transcribe(_wav()), 20)
        assert (await stt._transcribe(_wav())).text == "what notes do I have"
        fake.hang_next(1, 60)
        with pytest.raises(openai.APITimeoutError):
            await asyncio.wait_for(speech(tts), 20)
        assert len(await speech(tts)) > PCM_RATE // 10
        await bundle.aclose()

    asyncio.run(run())
    # One request per try: no retry of the hung one.
    assert len(fake.requests_to("/v1/audio/transcriptions")) == 2
    assert len(fake.requests_to("/v1/audio/speech")) == 2


async def _speak(tts, text: str) -> list:
    tts._sample_rate = tts._init_sample_rate  # as the pipeline's start sets it (chunk sizes follow it)
    return [f async for f in tts.run_tts(text, "turn-1")]


def test_a_self_hosted_servers_voice_is_spoken_at_the_servers_own_rate(settings):
    """Pipecat refused any voice outside OpenAI's list, and took raw "pcm" to be 24 kHz: a Piper
    voice at 22.05 kHz would have been refused, or played 9% fast."""
    from pipecat.frames.frames import TTSAudioRawFrame

    with FakeOpenAI(api_key=TTS_KEY, voices=("en_GB-alba-medium", "en_US-amy-low"), speech_rate=22050) as piper:
        hosted_settings(settings, piper.url, tts_key=TTS_KEY)
        settings.VOICE_TTS_VOICE = "en_US-amy-low"
        bundle = load_bundle()

        async def run() -> list:
            frames = await _speak(bundle.make_tts(voice="en_GB-alba-medium"), "Hello there, how are you?")
            await bundle.aclose()
            return frames

        frames = asyncio.run(run())
        audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
        assert audio and {f.sample_rate for f in audio} == {24000}  # resampled to the pipeline's rate
        seconds = sum(len(f.audio) for f in audio) / 2 / 24000
        expected = piper.speech_seconds("Hello there, how are you?")
        assert abs(seconds - expected) < 0.05 * expected, (seconds, expected)  # same length: not sped up
        (request,) = piper.requests_to("/v1/audio/speech", ok=True)
        assert request.json["voice"] == "en_GB-alba-medium" and request.json["response_format"] == "wav"


def test_a_voice_the_server_does_not_offer_is_replaced_and_logged(settings, fake, caplog):
    hosted_settings(settings, fake.url)
    settings.VOICE_TTS_VOICES = ["alloy", "nova"]
    bundle = load_bundle()
    with caplog.at_level("INFO", logger="voicebot.services"):
        assert bundle.make_tts(voice="af_bella")._settings.voice == "alloy"
    assert "[VoiceSession] voice 'af_bella' is not one the TTS server offers; speaking with 'alloy'" in caplog.text
    assert bundle.make_tts(voice="nova")._settings.voice == "nova"
    assert bundle.make_tts(voice="voice_1234abcd")._settings.voice == "voice_1234abcd"  # OpenAI's custom voices


def test_the_fake_refuses_what_openai_refuses(fake):
    auth = {"Authorization": f"Bearer {STT_KEY}"}
    with httpx.Client(base_url=fake.url, timeout=5) as http:
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        missing = http.post("/chat/completions", json=chat)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "invalid_request_error"
        wrong_key = "sk-wrong-key-0123456789abcdef"
        wrong = http.post("/chat/completions", json=chat, headers={"Authorization": f"Bearer {wrong_key}"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        # As OpenAI does: the key quoted masked (its start and last four), never whole.
        assert wrong_key not in wrong.text and "sk-wrong****" in wrong.text and "cdef." in wrong.text
        unknown = http.post("/chat/completions", json={**chat, "temprature": 0.2}, headers=auth)
        assert unknown.status_code == 400
        assert unknown.json()["error"]["message"] == "Unrecognized request argument supplied: temprature"
        typed = http.post("/chat/completions", json={**chat, "temperature": "hot"}, headers=auth)
        assert typed.status_code == 400 and typed.json()["error"]["param"] == "temperature"
        orphan = http.post("/chat/completions", headers=auth, json={"model": "m", "messages": [
            {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "{}"}]})
        assert orphan.status_code == 400
        unanswered = http.post("/chat/completions", headers=auth, json={"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "list_notes", "arguments": "{}"}}]},
            {"role": "user", "content": "and?"}]})
        assert unanswered.status_code == 400 and "c1" in unanswered.json()["error"]["message"]
        bad_tool = http.post("/chat/completions", headers=auth, json={**chat, "tools": [{"name": "list_notes"}]})
        assert bad_tool.status_code == 400
        as_json = http.post("/audio/transcriptions", json={"model": "whisper-1"}, headers=auth)
        assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["error"]["message"]
        no_model = http.post("/audio/transcriptions", headers=auth, files={"file": ("a.wav", _wav(), "audio/wav")})
        assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
        bad_ext = http.post("/audio/transcriptions", headers=auth, data={"model": "whisper-1"},
                            files={"file": ("a.txt", b"hello", "text/plain")})
        assert bad_ext.status_code == 400
        verbose = http.post("/audio/transcriptions", headers=auth,
                            data={"model": "gpt-4o-transcribe", "response_format": "verbose_json"},
                            files={"file": ("a.wav", _wav(), "audio/wav")})
        assert verbose.status_code == 400
        speech = {"model": "gpt-4o-mini-tts", "input": "hello", "voice": "alloy", "response_format": "pcm"}
        assert http.post("/audio/speech", headers=auth, json={**speech, "voice": "default"}).status_code == 400
        assert http.post("/audio/speech", headers=auth, json={**speech, "speed": 5}).status_code == 400
        assert http.post("/audio/speech", headers=auth, json={**speech, "sample_rate": 16000}).status_code == 400
        ok = http.post("/audio/speech", headers=auth, json=speech)
        assert ok.status_code == 200 and len(ok.content) == PCM_RATE * 2 // 2  # 0.5 s of 16-bit mono
        assert http.get("/chat/completions", headers=auth).status_code == 404


# The Daily transport runs end to end against a simulated Daily room: tests/test_daily_e2e.py.


# --- (b) end to end: real worker, WebRTC peer, hosted services on the fake -------------------------

@pytest.mark.server
@pytest.mark.timeout(240)
def test_spoken_question_through_hosted_services_end_to_end(tmp_path):
    from tests.botharness import BOT_ENV, active_session, is_final_transcript, speak_to_wav, start_worker, stop_worker
    from tests.livesrv import start_server

    with FakeOpenAI(api_key=STT_KEY) as stt_api, FakeOpenAI(api_key=LLM_KEY) as llm_api, \
            FakeOpenAI(api_key=TTS_KEY) as tts_api:
        env = {**BOT_ENV, "VOICE_STT": "openai", "VOICE_LLM": "openai", "VOICE_TTS": "openai",
               "VOICE_STT_BASE_URL": stt_api.url, "VOICE_STT_API_KEY": STT_KEY, "VOICE_STT_MODEL": "gpt-4o-transcribe",
               "VOICE_LLM_BASE_URL": llm_api.url, "VOICE_LLM_API_KEY": LLM_KEY, "VOICE_LLM_MODEL": "gpt-4.1-mini",
               "VOICE_TTS_BASE_URL": tts_api.url, "VOICE_TTS_API_KEY": TTS_KEY, "VOICE_TTS_MODEL": "gpt-4o-mini-tts",
               "VOICE_TTS_VOICE": "alloy"}
        server = start_server(tmp_path, env)
        started = time.monotonic()
        worker = start_worker(server, "--pool-size", "1")
        try:
            assert time.monotonic() - started < 60, "a hosted-only worker should not spend long loading models"
            question = speak_to_wav("What notes do I have?", tmp_path / "question.wav")

            async def scenario() -> None:
                client, peer, _session_id = await active_session(server, persistence=2, expect_new=True)
                peer.say_wav(str(question))

                user = await client.wait_for(is_final_transcript("user"), 30, "final user transcript")
                assert user["payload"]["text"] == "what notes do I have"  # the fake's transcription
                call = await client.wait_for(lambda e: e["type"] == "voice.tool.call", 20, "tool call")
                assert call["payload"]["name"] == "list_notes"
                result = await client.wait_for(lambda e: e["type"] == "voice.tool.result", 20, "tool result")
                assert result["payload"]["name"] == "list_notes" and result["payload"]["result"]["ok"] is True
                said = await client.wait_for(lambda e: is_final_transcript("assistant")(e) and "note" in
                                             e["payload"]["text"], 30, "spoken answer from the tool result")
                assert said["payload"]["text"].startswith("You have")
                await client.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"]["speaking"],
                                      30, "bot speaking")
                await heard_answer(peer)  # the fake's speech reaches the peer
                await peer.close()
                client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
                await client.close()

            asyncio.run(scenario())
        finally:
            stop_worker(worker)
            server.stop()

        # STT: Pipecat's segment as a WAV at the pipeline's input rate, with the STT key.
        transcriptions = stt_api.requests_to("/v1/audio/transcriptions", ok=True)
        assert transcriptions, [(r.path, r.status) for r in stt_api.requests]
        first = transcriptions[0]
        assert first.headers["authorization"] == f"Bearer {STT_KEY}"
        assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert first.form["model"] == ["gpt-4o-transcribe"] and first.form["language"] == ["en"]
        fmt = first.files["file"].wav_format()
        assert (fmt["rate"], fmt["channels"], fmt["sample_width"]) == (16000, 1, 2) and fmt["frames"] > 16000 // 2

        # LLM: native tool calling with the notes tools, then the tool's answer in the context.
        chats = llm_api.requests_to("/v1/chat/completions", ok=True)
        assert len(chats) >= 2, [(r.status, r.json) for r in llm_api.requests]
        assert all(r.headers["authorization"] == f"Bearer {LLM_KEY}" for r in chats)
        assert {t["function"]["name"] for t in chats[0].json["tools"]} == {
            "create_note", "list_notes", "read_note", "update_note", "delete_note", "search_notes"}
        assert chats[0].json["messages"][-1]["role"] == "user"
        assert "what notes do I have" in chats[0].json["messages"][-1]["content"]
        follow_up = next(r for r in chats if r.json["messages"][-1]["role"] == "tool")
        assert json.loads(follow_up.json["messages"][-1]["content"])["ok"] is True

        # TTS: raw PCM requested from the speech endpoint with the TTS key.
        speech = tts_api.requests_to("/v1/audio/speech", ok=True)
        assert speech and all(r.headers["authorization"] == f"Bearer {TTS_KEY}" for r in speech)
        assert speech[0].json["response_format"] == "wav" and speech[0].json["voice"] == "alloy"
        assert "note" in " ".join(r.json["input"] for r in speech)

        # Every request the services sent passed the fake's checks, and no key reached the log.
        for api in (stt_api, llm_api, tts_api):
            assert all(200 <= r.status < 300 for r in api.requests), [(r.path, r.status) for r in api.requests]
        log = open(worker.log.name).read()
        for key in (STT_KEY, LLM_KEY, TTS_KEY):
            assert key not in log
