"""Streaming providers over websockets: Deepgram (STT), Cartesia and ElevenLabs (TTS).

Each is Pipecat's own service, run in a real Pipecat pipeline against a local
fake that checks the handshake and every message as the provider documents
them (tests/fakes/deepgram_api.py, cartesia_api.py, elevenlabs_api.py), and
answers as the provider does: interim and final results, audio chunks with word
timings, refusals at the handshake, error messages, requests never answered.
"""
from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
from pipecat.frames.frames import (EndFrame, ErrorFrame, Frame, InputAudioRawFrame, InterimTranscriptionFrame,
                                   LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame,
                                   TranscriptionFrame, TTSAudioRawFrame, TTSStoppedFrame, TTSTextFrame,
                                   VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from tests.fakes.cartesia_api import VOICE as CARTESIA_VOICE
from tests.fakes.cartesia_api import FakeCartesia
from tests.fakes.deepgram_api import FakeDeepgram
from voicebot.provider_errors import describe
from voicebot.services import load_bundle
from voicebot.services.hosted import HostedConfigError

DG_KEY, CARTESIA_KEY, EL_KEY = "dg-test-key-31b9", "sk_car_test_77e0", "sk_el_test_5a1f"


@pytest.fixture
def deepgram():
    with FakeDeepgram(api_key=DG_KEY, transcripts=("What notes do I have?", "Thank you.")) as api:
        yield api


@pytest.fixture
def cartesia():
    with FakeCartesia(api_key=CARTESIA_KEY) as api:
        yield api


def streaming_settings(settings, *, stt_url: str = "", tts_url: str = "", tts: str = "cartesia") -> None:
    """Deepgram and/or a streaming TTS on their fakes; the other stages hosted (OpenAI's, never called here),
    so no local model loads."""
    settings.VOICE_STT = settings.VOICE_LLM = settings.VOICE_TTS = "openai"
    settings.VOICE_STT_API_KEY = settings.VOICE_LLM_API_KEY = settings.VOICE_TTS_API_KEY = "sk-unused"
    settings.VOICE_STT_BASE_URL = settings.VOICE_LLM_BASE_URL = settings.VOICE_TTS_BASE_URL = "https://api.openai.com/v1"
    settings.VOICE_STT_MODEL, settings.VOICE_TTS_MODEL, settings.VOICE_TTS_VOICE = "whisper-1", "tts-1", "alloy"
    if stt_url:
        settings.VOICE_STT, settings.VOICE_STT_BASE_URL = "deepgram", stt_url
        settings.VOICE_STT_API_KEY, settings.VOICE_STT_MODEL = DG_KEY, "nova-3-general"
    if tts_url:
        settings.VOICE_TTS, settings.VOICE_TTS_BASE_URL = tts, tts_url
        settings.VOICE_TTS_API_KEY = CARTESIA_KEY
        settings.VOICE_TTS_MODEL, settings.VOICE_TTS_VOICE = "sonic-3.6", CARTESIA_VOICE
    settings.VOICE_WARM_MODELS = False


class Collector(FrameProcessor):
    """The pipeline's end: keeps every frame that reaches it (both ways), and wakes a waiter."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        self.changed.set()
        await self.push_frame(frame, direction)


class Upstream(FrameProcessor):
    """The pipeline's start: keeps what the service pushes upstream (its errors)."""

    def __init__(self, into: Collector) -> None:
        super().__init__()
        self.into = into

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.UPSTREAM:
            self.into.frames.append(frame)
            self.into.changed.set()
        await self.push_frame(frame, direction)


async def run_service(service: Any, feed: Callable[[PipelineWorker], Any], until: Callable[[list[Frame]], bool],
                      *, timeout: float = 20, out_rate: int = 24000) -> list[Frame]:
    """Run `service` in a pipeline, `feed` it, and end the pipeline once `until` holds of the frames seen."""
    sink = Collector()
    task = PipelineWorker(Pipeline([Upstream(sink), service, sink]),
                          params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=out_rate),
                          cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @task.event_handler("on_pipeline_started")
    async def _started(_task: Any, _frame: Any) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), timeout)  # frames queued before the start would be dropped
        await feed(task)
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(sink.frames):
            sink.changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                await task.cancel()
                raise AssertionError(f"timed out; saw {[type(f).__name__ for f in sink.frames]}")
            try:
                await asyncio.wait_for(sink.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        await task.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(task)
    await asyncio.gather(runner.run(), drive())
    return sink.frames


def answer_frames(*sentences: str) -> list[Frame]:
    """What the LLM pushes for one spoken answer."""
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(s) for s in sentences), LLMFullResponseEndFrame()]


def speech_frames(path: Path, *, tail_seconds: float = 0.8) -> list[Frame]:
    """A WAV as the transport's 20 ms input frames at 16 kHz, the VAD's start and stop around it, then silence."""
    import subprocess

    resampled = path.with_suffix(".16k.wav")
    subprocess.run(["sox", str(path), "-r", "16000", "-c", "1", "-b", "16", str(resampled)], check=True)
    with wave.open(str(resampled)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        pcm = wav.readframes(wav.getnframes())
    step = 320 * 2
    frames: list[Frame] = [VADUserStartedSpeakingFrame()]
    frames += [InputAudioRawFrame(pcm[i:i + step], 16000, 1) for i in range(0, len(pcm), step)]
    frames += [InputAudioRawFrame(b"\x00" * step, 16000, 1) for _ in range(int(tail_seconds / 0.02))]
    return [*frames[:-1], VADUserStoppedSpeakingFrame(), frames[-1]]


# --- settings and the bundle -------------------------------------------------------------

def test_streaming_providers_load_no_local_model_and_build_pipecats_own_services(settings, monkeypatch, deepgram,
                                                                                  cartesia):
    from pipecat.services.cartesia.tts import CartesiaTTSService
    from pipecat.services.deepgram.stt import DeepgramSTTService

    from tests.test_hosted_services import _no_local_models

    _no_local_models(monkeypatch)
    streaming_settings(settings, stt_url=deepgram.url, tts_url=cartesia.url)
    bundle = load_bundle()
    stt, tts = bundle.make_stt(language="en"), bundle.make_tts(voice="alloy")
    assert isinstance(stt, DeepgramSTTService) and isinstance(tts, CartesiaTTSService)
    assert tts._settings.voice == CARTESIA_VOICE  # "alloy" is no Cartesia voice: replaced
    assert bundle.tts_sample_rate == 24000


@pytest.mark.parametrize("name, value, error", [
    ("VOICE_STT_API_KEY", "", "VOICE_STT=deepgram needs VOICE_STT_API_KEY"),
    ("VOICE_TTS_API_KEY", "", "VOICE_TTS=cartesia needs VOICE_TTS_API_KEY"),
    ("VOICE_TTS_VOICE", "alloy", "VOICE_TTS_VOICE must be a cartesia voice id, not 'alloy'"),
    ("VOICE_STT_BASE_URL", "api.deepgram.com", "VOICE_STT_BASE_URL must be an http(s) or ws(s) URL"),
])
def test_unusable_streaming_settings_fail_before_anything_loads(settings, monkeypatch, name, value, error):
    from tests.test_hosted_services import _no_local_models

    _no_local_models(monkeypatch)
    streaming_settings(settings, stt_url="https://api.deepgram.com", tts_url="wss://api.cartesia.ai/tts/websocket")
    setattr(settings, name, value)
    with pytest.raises(HostedConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        load_bundle()


def test_a_voice_of_another_providers_shape_is_replaced_and_logged(settings, cartesia, caplog):
    streaming_settings(settings, tts_url=cartesia.url)
    bundle = load_bundle()
    with caplog.at_level("INFO", logger="voicebot.services"):
        assert bundle.make_tts(voice="pearl")._settings.voice == CARTESIA_VOICE
    assert "[VoiceSession] voice 'pearl' is not a cartesia voice id; speaking with" in caplog.text
    own = "6f84f4b8-58a2-430c-8c79-688dad597532"
    assert bundle.make_tts(voice=own)._settings.voice == own


# --- Deepgram ---------------------------------------------------------------------------------

def test_deepgram_streams_the_audio_and_gives_interim_then_final_transcripts(settings, deepgram, tmp_path):
    from tests.botharness import speak_to_wav

    streaming_settings(settings, stt_url=deepgram.url)
    bundle = load_bundle()
    wav = speak_to_wav("Could you tell me which notes I have saved so far today please?", tmp_path / "q.wav")

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(speech_frames(wav))

    frames = asyncio.run(run_service(bundle.make_stt(language="en"), feed,
                                     lambda seen: any(isinstance(f, TranscriptionFrame) for f in seen)))
    interims = [f.text for f in frames if isinstance(f, InterimTranscriptionFrame)]
    (final,) = [f.text for f in frames if isinstance(f, TranscriptionFrame)]
    assert final == "What notes do I have?"
    assert interims and all(final.startswith(text) for text in interims)  # growing prefixes, while speaking

    (handshake,) = deepgram.accepted()
    assert handshake.headers["authorization"] == f"Token {DG_KEY}"
    assert (handshake.param("model"), handshake.param("language")) == ("nova-3-general", "en")
    assert (handshake.param("encoding"), handshake.param("sample_rate"), handshake.param("channels")) == (
        "linear16", "16000", "1")
    assert handshake.param("interim_results") == "true"
    assert len(handshake.audio) >= 16000 * 2  # the speech itself went over the socket
    assert {"type": "Finalize"} in handshake.texts  # sent at the VAD's end of speech
    assert any(r["from_finalize"] for r in deepgram.results if r["is_final"])


def test_deepgram_is_asked_to_detect_the_language_when_the_session_leaves_it(settings, deepgram):
    streaming_settings(settings, stt_url=deepgram.url)
    bundle = load_bundle()
    assert bundle.make_stt(language="auto")._settings.language == "multi"
    assert str(bundle.make_stt(language="de")._settings.language) == "de"


@pytest.mark.parametrize("model, boosted", [("nova-3-general", ("keyterm", ["Pearl", "Zorblax Pro"])),
                                            ("nova-2-general", ("keywords", ["Pearl", "Zorblax", "Pro"])),
                                            ("whisper", None)])
def test_deepgram_is_told_the_assistants_name_as_the_model_takes_it(settings, deepgram, model, boosted, tmp_path):
    """Nova-3 boosts keyterms (phrases too), the older models single-word keywords; each refuses the
    other (the fake, as the docs say). The assistant's transcriber keywords follow its name."""
    from tests.botharness import speak_to_wav

    streaming_settings(settings, stt_url=deepgram.url)
    settings.VOICE_STT_MODEL = model
    bundle = load_bundle()
    bundle.stt_keywords = ("Zorblax Pro",)
    wav = speak_to_wav("Hello Pearl.", tmp_path / "hello.wav")

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(speech_frames(wav))

    asyncio.run(run_service(bundle.make_stt(language="en", name="Pearl"), feed,
                            lambda seen: bool(deepgram.accepted()), timeout=30))
    (handshake,) = deepgram.accepted()
    sent = {k: v for k, v in handshake.query.items() if k in ("keyterm", "keywords")}
    assert sent == (dict([boosted]) if boosted else {})


def test_a_refused_deepgram_key_is_one_fatal_auth_error(settings, deepgram):
    streaming_settings(settings, stt_url=deepgram.url)
    settings.VOICE_STT_API_KEY = "dg-wrong-key"
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        pass

    frames = asyncio.run(run_service(bundle.make_stt(), feed,
                                     lambda seen: any(isinstance(f, ErrorFrame) for f in seen)))
    errors = [f for f in frames if isinstance(f, ErrorFrame)]
    seen = describe(errors[0])
    assert (seen.stage, seen.code, seen.fatal) == ("stt", "stt_auth_failed", True), errors[0].error
    assert "dg-wrong-key" not in seen.message
    assert [h.status for h in deepgram.handshakes] == [401]  # refused once, not retried in a loop


# --- OpenAI's realtime transcription ---------------------------------------------------------

RT_KEY = "sk-test-realtime-0c6e1f2a9b"


@pytest.fixture
def realtime():
    from tests.fakes.openai_realtime import FakeOpenAIRealtime

    with FakeOpenAIRealtime(api_key=RT_KEY) as api:
        yield api


def realtime_settings(settings, url: str) -> None:
    streaming_settings(settings)
    settings.VOICE_STT, settings.VOICE_STT_BASE_URL = "openai-realtime", url
    settings.VOICE_STT_API_KEY, settings.VOICE_STT_MODEL = RT_KEY, "gpt-realtime-whisper"


def test_openai_realtime_transcribes_each_spoken_segment_with_whole_interim_transcripts(settings, realtime,
                                                                                        tmp_path):
    from tests.botharness import speak_to_wav

    realtime_settings(settings, realtime.url)
    bundle = load_bundle()
    wav = speak_to_wav("Could you tell me which notes I have saved so far today please?", tmp_path / "q.wav")

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(speech_frames(wav))

    def finished(seen: list[Frame]) -> bool:
        return any(isinstance(f, TranscriptionFrame) for f in seen)

    frames = asyncio.run(run_service(bundle.make_stt(language="auto"), feed, finished))
    (final,) = [f.text for f in frames if isinstance(f, TranscriptionFrame)]
    interims = [f.text for f in frames if isinstance(f, InterimTranscriptionFrame)]
    assert final == "What notes do I have?"
    # The text so far each time, not one word at a time as OpenAI's deltas come.
    assert interims == ["What", "What notes", "What notes do", "What notes do I", "What notes do I have?"]

    (handshake,) = realtime.accepted()
    assert handshake.headers["authorization"] == f"Bearer {RT_KEY}" and handshake.param("intent") == "transcription"
    (session,) = realtime.sessions
    transcription = session["audio"]["input"]["transcription"]
    assert transcription == {"model": "gpt-realtime-whisper"}  # "auto": no language, OpenAI detects it
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}  # upsampled from 16 kHz
    assert session["audio"]["input"]["turn_detection"] is None  # our VAD ends the turns
    assert {"type": "input_audio_buffer.commit"} in handshake.texts and not realtime.errors


@pytest.mark.parametrize("model, prompt", [("gpt-4o-transcribe", "A call with Pearl about Nuvexa."),
                                           ("gpt-realtime-whisper", None)])
def test_openai_realtime_is_told_the_assistants_name_where_the_model_takes_a_prompt(settings, realtime, model,
                                                                                    prompt, tmp_path):
    from tests.botharness import speak_to_wav

    realtime_settings(settings, realtime.url)
    settings.VOICE_STT_MODEL = model
    bundle = load_bundle()
    bundle.stt_keywords = ("Nuvexa",)  # the assistant's transcriber keywords, after its name
    wav = speak_to_wav("Hello Pearl.", tmp_path / "hello.wav")

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(speech_frames(wav))

    frames = asyncio.run(run_service(bundle.make_stt(language="en", name="Pearl"), feed,
                                     lambda seen: any(isinstance(f, TranscriptionFrame) for f in seen)))
    assert [f.text for f in frames if isinstance(f, TranscriptionFrame)] == ["What notes do I have?"]
    (session,) = realtime.sessions  # the fake refuses a prompt to gpt-realtime-whisper, as OpenAI does
    assert session["audio"]["input"]["transcription"].get("prompt") == prompt


def test_an_empty_realtime_commit_is_not_a_failure(settings, realtime):
    realtime_settings(settings, realtime.url)
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames([VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame()])
        await task.queue_frames([InputAudioRawFrame(b"\x00" * 640, 16000, 1) for _ in range(5)])

    def answered(seen: list[Frame]) -> bool:
        return bool(realtime.errors) and len(seen) > 5

    frames = asyncio.run(run_service(bundle.make_stt(), feed, answered))
    assert realtime.errors[0]["code"] == "input_audio_buffer_commit_empty"
    assert not [f for f in frames if isinstance(f, ErrorFrame)]
    assert len(realtime.handshakes) == 1  # and no reconnect


def test_a_refused_realtime_key_is_one_fatal_auth_error(settings, realtime):
    realtime_settings(settings, realtime.url)
    settings.VOICE_STT_API_KEY = "sk-wrong-key-0123456789abcdef"
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        pass

    frames = asyncio.run(run_service(bundle.make_stt(), feed,
                                     lambda seen: any(isinstance(f, ErrorFrame) and describe(f).fatal for f in seen),
                                     timeout=30))
    seen = describe(next(f for f in frames if isinstance(f, ErrorFrame) and describe(f).fatal))
    assert (seen.stage, seen.code) == ("stt", "stt_auth_failed")
    assert "0123456789abcdef" not in seen.message and "cdef" not in seen.message


# --- Cartesia ---------------------------------------------------------------------------------

def _spoken(frames: Sequence[Frame]) -> tuple[float, str]:
    audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    seconds = sum(len(f.audio) for f in audio) / 2 / 24000
    words = " ".join(f.text for f in frames if isinstance(f, TTSTextFrame))
    return seconds, words


def test_cartesia_speaks_each_sentence_with_word_timings(settings, cartesia):
    from tests.fakes.ws import speech

    streaming_settings(settings, tts_url=cartesia.url)
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("Hello there. ", "You have two notes saved."))

    frames = asyncio.run(run_service(bundle.make_tts(voice=CARTESIA_VOICE, parameters={"speed": 1.2}), feed,
                                     lambda seen: any(isinstance(f, TTSStoppedFrame) for f in seen)))
    seconds, words = _spoken(frames)
    expected = sum(len(speech(t, 24000, speed=1.2)[0]) for t in ("Hello there.", "You have two notes saved.")) / 2
    assert abs(seconds - expected / 24000) < 0.05, (seconds, expected / 24000)  # every chunk, at 24 kHz
    assert words.split() == "Hello there. You have two notes saved.".split()  # the transcript from the timings

    (handshake,) = cartesia.accepted()
    assert handshake.headers["x-api-key"] == CARTESIA_KEY and handshake.headers["cartesia-version"]
    spoken = [r for r in cartesia.requests if r.get("transcript")]
    assert [r["transcript"].strip() for r in spoken] == ["Hello there.", "You have two notes saved."]
    first = spoken[0]
    assert first["voice"] == {"mode": "id", "id": CARTESIA_VOICE} and first["model_id"] == "sonic-3.6"
    assert first["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
    assert first["generation_config"] == {"speed": 1.2} and first["add_timestamps"] is True
    assert len({r["context_id"] for r in cartesia.requests}) == 1  # one context for the whole answer
    assert cartesia.requests[-1]["continue"] is False  # closed, so Cartesia says done
    assert not cartesia.errors


def test_a_refused_cartesia_key_is_one_fatal_auth_error(settings, cartesia):
    streaming_settings(settings, tts_url=cartesia.url)
    settings.VOICE_TTS_API_KEY = "sk_car_wrong"
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        pass

    frames = asyncio.run(run_service(bundle.make_tts(), feed,
                                     lambda seen: any(isinstance(f, ErrorFrame) for f in seen)))
    seen = describe(next(f for f in frames if isinstance(f, ErrorFrame)))
    assert (seen.stage, seen.code, seen.fatal) == ("tts", "tts_auth_failed", True)
    assert cartesia.handshakes[0].status == 401


def test_a_cartesia_error_message_is_reported_and_the_next_answer_spoken(settings, cartesia):
    streaming_settings(settings, tts_url=cartesia.url)
    bundle = load_bundle()
    cartesia.fail_next(1)

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("This one fails."))
        await task.queue_frames(answer_frames("This one is spoken."))

    def spoken_twice(seen: list[Frame]) -> bool:
        return any(isinstance(f, ErrorFrame) for f in seen) and "spoken." in _spoken(seen)[1]

    frames = asyncio.run(run_service(bundle.make_tts(), feed, spoken_twice))
    error = next(f for f in frames if isinstance(f, ErrorFrame))
    assert describe(error).stage == "tts" and not describe(error).fatal
    assert cartesia.errors[0]["status_code"] == 500


# --- end to end: real worker, WebRTC peer, Deepgram and Cartesia on their fakes -------------------

@pytest.mark.server
@pytest.mark.timeout(240)
@pytest.mark.parametrize("stt, tts", [("deepgram", "cartesia"), ("openai-realtime", "elevenlabs")])
def test_spoken_question_through_streaming_providers_end_to_end(tmp_path, stt, tts):
    from tests.botharness import BOT_ENV, active_session, is_final_transcript, speak_to_wav, start_worker, stop_worker
    from tests.fakes.elevenlabs_api import VOICE as EL_VOICE
    from tests.fakes.elevenlabs_api import FakeElevenLabs
    from tests.fakes.openai_api import FakeOpenAI
    from tests.fakes.openai_realtime import FakeOpenAIRealtime
    from tests.livesrv import start_server
    from tests.waiting import heard_answer

    llm_key = "sk-test-llm-4d2a"
    stt_key, fake_stt = ((DG_KEY, FakeDeepgram(api_key=DG_KEY)) if stt == "deepgram"
                         else (RT_KEY, FakeOpenAIRealtime(api_key=RT_KEY)))
    tts_key, fake_tts, voice = ((CARTESIA_KEY, FakeCartesia(api_key=CARTESIA_KEY), CARTESIA_VOICE) if tts == "cartesia"
                                else (EL_KEY, FakeElevenLabs(api_key=EL_KEY), EL_VOICE))
    with fake_stt as stt_api, FakeOpenAI(api_key=llm_key) as llm_api, fake_tts as tts_api:
        env = {**BOT_ENV, "VOICE_STT": stt, "VOICE_LLM": "openai", "VOICE_TTS": tts,
               "VOICE_STT_BASE_URL": stt_api.url, "VOICE_STT_API_KEY": stt_key,
               "VOICE_LLM_BASE_URL": llm_api.url, "VOICE_LLM_API_KEY": llm_key, "VOICE_LLM_MODEL": "gpt-4.1-mini",
               "VOICE_TTS_BASE_URL": tts_api.url, "VOICE_TTS_API_KEY": tts_key, "VOICE_TTS_VOICE": voice}
        server = start_server(tmp_path, env)
        worker = start_worker(server, "--pool-size", "1")
        try:
            question = speak_to_wav("Could you tell me which notes I have saved so far today please?",
                                    tmp_path / "question.wav")

            async def scenario() -> None:
                client, peer, _session_id = await active_session(server, persistence=2, expect_new=True)
                peer.say_wav(str(question))
                interim = await client.wait_for(lambda e: e["type"] == "voice.transcript"
                                                and e["payload"]["role"] == "user"
                                                and not e["payload"]["final"], 30, "interim user transcript")
                user = await client.wait_for(is_final_transcript("user"), 30, "final user transcript")
                assert user["payload"]["text"] == "What notes do I have?"
                assert user["payload"]["text"].startswith(interim["payload"]["text"])
                call = await client.wait_for(lambda e: e["type"] == "voice.tool.call", 20, "tool call")
                assert call["payload"]["name"] == "list_notes"
                said = await client.wait_for(lambda e: is_final_transcript("assistant")(e) and "note" in
                                             e["payload"]["text"], 30, "spoken answer from the tool result")
                assert said["payload"]["text"].startswith("You have")
                await heard_answer(peer)  # Cartesia's audio reaches the peer
                await peer.close()
                client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
                await client.close()

            asyncio.run(scenario())
        finally:
            stop_worker(worker)
            server.stop()

        (handshake, *_rest) = stt_api.accepted()
        if stt == "deepgram":
            assert handshake.headers["authorization"] == f"Token {DG_KEY}" and handshake.param("sample_rate") == "16000"
            assert len(handshake.audio) > 16000 * 2  # the user's speech went over the socket
        else:
            assert handshake.headers["authorization"] == f"Bearer {RT_KEY}"
            appended = [m for m in handshake.texts if m.get("type") == "input_audio_buffer.append"]
            assert sum(len(m["audio"]) for m in appended) * 3 // 4 > 24000 * 2  # the speech, at 24 kHz
            assert stt_api.completed[0] == "What notes do I have?"
        assert "note" in tts_api.spoken_text()
        assert not getattr(tts_api, "errors", None) and not getattr(tts_api, "closed_with", None)
        assert all(h.status == 101 for h in stt_api.handshakes + tts_api.handshakes)
        log = open(worker.log.name).read()
        for key in (stt_key, llm_key, tts_key):
            assert key not in log


def test_a_cartesia_request_never_answered_is_reported_and_the_next_answer_spoken(settings, cartesia):
    streaming_settings(settings, tts_url=cartesia.url)
    bundle = load_bundle()
    cartesia.hang_next(2)  # the sentence and the close of its context: nothing comes back

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("Nobody answers this."))

    frames = asyncio.run(run_service(bundle.make_tts(), feed,
                                     lambda seen: any(isinstance(f, ErrorFrame) for f in seen), timeout=30))
    error = next(f for f in frames if isinstance(f, ErrorFrame))
    assert describe(error).stage == "tts" and not describe(error).fatal

    async def feed_two(task: PipelineWorker) -> None:
        cartesia.hang_next(2)
        await task.queue_frames(answer_frames("Nobody answers this."))
        await task.queue_frames(answer_frames("This one is spoken."))

    frames = asyncio.run(run_service(bundle.make_tts(), feed_two, lambda seen: "spoken." in _spoken(seen)[1],
                                     timeout=30))
    assert _spoken(frames)[0] > 0.5


# --- ElevenLabs -------------------------------------------------------------------------------


@pytest.fixture
def elevenlabs():
    from tests.fakes.elevenlabs_api import FakeElevenLabs

    with FakeElevenLabs(api_key=EL_KEY) as api:
        yield api


def elevenlabs_settings(settings, url: str) -> None:
    from tests.fakes.elevenlabs_api import VOICE

    streaming_settings(settings, tts_url=url, tts="elevenlabs")
    settings.VOICE_TTS_API_KEY, settings.VOICE_TTS_MODEL, settings.VOICE_TTS_VOICE = EL_KEY, "eleven_flash_v2_5", VOICE


def test_elevenlabs_speaks_each_answer_in_its_own_context_with_word_timings(settings, elevenlabs):
    from tests.fakes.elevenlabs_api import VOICE

    elevenlabs_settings(settings, elevenlabs.url)
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("Hello there. ", "You have two notes saved."))

    frames = asyncio.run(run_service(bundle.make_tts(voice="alloy", parameters={"speed": 1.1}), feed,
                                     lambda seen: "saved." in _spoken(seen)[1]))
    seconds, words = _spoken(frames)
    assert words.split() == "Hello there. You have two notes saved.".split()
    assert seconds > 1.5  # both sentences' audio, at 24 kHz

    (handshake,) = elevenlabs.accepted()
    assert handshake.path == f"/v1/text-to-speech/{VOICE}/multi-stream-input"  # "alloy" replaced
    assert handshake.headers["xi-api-key"] == EL_KEY
    assert (handshake.param("model_id"), handshake.param("output_format")) == ("eleven_flash_v2_5", "pcm_24000")
    first = handshake.texts[0]
    assert first["text"] == " " and first["voice_settings"] == {"speed": 1.1}  # the context opened with its settings
    assert elevenlabs.spoken_text() == "Hello there. You have two notes saved."
    assert not elevenlabs.closed_with


def test_a_refused_elevenlabs_key_is_reported_and_not_retried_forever(settings, elevenlabs):
    elevenlabs_settings(settings, elevenlabs.url)
    settings.VOICE_TTS_API_KEY = "sk_el_wrong"
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("Hello there."))

    def refused(seen: list[Frame]) -> bool:
        return any(isinstance(f, ErrorFrame) and describe(f).fatal for f in seen)

    frames = asyncio.run(run_service(bundle.make_tts(), feed, refused, timeout=30))
    seen = describe(next(f for f in frames if isinstance(f, ErrorFrame) and describe(f).fatal))
    assert (seen.stage, seen.code) == ("tts", "tts_auth_failed")  # Pipecat took it for a dropped socket
    assert elevenlabs.closed_with == [(1008, "Invalid API key")]  # and reconnected, refused each time
    assert "sk_el_wrong" not in seen.message


def test_a_voice_elevenlabs_does_not_have_is_a_rejected_request(settings, elevenlabs):
    elevenlabs_settings(settings, elevenlabs.url)
    settings.VOICE_TTS_VOICE = "AZnzlk1XvdvUeBnXmlld"  # well-formed, but not this account's
    bundle = load_bundle()

    async def feed(task: PipelineWorker) -> None:
        await task.queue_frames(answer_frames("Hello there."))

    frames = asyncio.run(run_service(bundle.make_tts(), feed,
                                     lambda seen: any(isinstance(f, ErrorFrame) and describe(f).fatal for f in seen),
                                     timeout=30))
    seen = describe(next(f for f in frames if isinstance(f, ErrorFrame) and describe(f).fatal))
    assert seen.code == "tts_rejected"


@pytest.mark.parametrize("code, reason, category", [
    (1008, "Invalid API key", "AUTHENTICATION"),
    (1008, "A voice with voice_id x does not exist", "INVALID_REQUEST"),
    (1008, "Have not received a new text input within the timeout of 20 seconds.", None),
    (1008, "voice_settings field must be provided in the first message and then either be not provided "
           "or not change.", None),
    (1011, "Invalid API key", None),
])
def test_only_a_refusal_elevenlabs_closes_with_is_final(code, reason, category):
    from voicebot.services.streaming import elevenlabs_refusal

    found = elevenlabs_refusal(code, reason)
    assert (found.name if found else None) == category
