"""Whisper decoding while the user speaks: interim transcripts, and the final one ready at the end.

The service runs in a real Pipecat pipeline with the shipped Whisper model. Frames are fed
by the test, and every wait is a bounded poll for what the service has done, so the
test does not depend on how fast this machine decodes.
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import wave
from pathlib import Path

import pytest
from pipecat.frames.frames import (EndFrame, Frame, InputAudioRawFrame, InterimTranscriptionFrame,
                                   TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from tests.waiting import await_until
from voicebot.services.stt import StreamingWhisperSTTService, load_whisper

RATE = 16000
FRAME = RATE * 2 // 50  # 20 ms of 16-bit mono


class Collect(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        await self.push_frame(frame, direction)


@pytest.fixture(scope="module")
def whisper():
    return load_whisper()


def _speech(tmp_path: Path, text: str) -> bytes:
    raw, wav = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes())


async def _started(stt: StreamingWhisperSTTService) -> tuple[PipelineWorker, Collect, asyncio.Task]:
    """The service in a running pipeline of its own, with a sink that keeps every frame."""
    sink = Collect()
    worker = PipelineWorker(Pipeline([stt, sink]), params=PipelineParams(audio_in_sample_rate=RATE),
                            enable_rtvi=False, idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await await_until(lambda: stt.sample_rate == RATE, 30, "pipeline started")
    return worker, sink, running


async def _utterance(stt: StreamingWhisperSTTService, pcm: bytes) -> tuple[Collect, float]:
    """Speak `pcm` into the service, then quiet until a decode holds the whole utterance, then the VAD stop."""
    worker, sink, running = await _started(stt)
    await worker.queue_frame(VADUserStartedSpeakingFrame())
    for i in range(0, len(pcm), FRAME):
        await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))
    silence = bytes(FRAME)
    quiet = 0

    async def covered() -> bool:
        nonlocal quiet
        # Quiet frames keep arriving as they would from a microphone, each letting a new decode start.
        await worker.queue_frame(InputAudioRawFrame(silence, RATE, 1))
        quiet += 1
        await asyncio.sleep(0.02)
        return stt._decoded_len >= len(pcm) + 1 * FRAME

    await await_until(covered, 60, "a decode of the whole utterance")
    await await_until(lambda: any(isinstance(f, InterimTranscriptionFrame) for f in sink.frames), 30, "interims")
    await await_until(lambda: len(stt._audio_buffer) == len(pcm) + quiet * FRAME, 30, "all audio taken in")
    # The VAD stops once it heard `stop_secs` of quiet: here, all the quiet the test sent.
    await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=quiet * FRAME / (RATE * 2)))
    await await_until(lambda: any(isinstance(f, TranscriptionFrame) and not isinstance(f, InterimTranscriptionFrame)
                                  for f in sink.frames), 60, "final transcript")
    await worker.queue_frame(EndFrame())
    await asyncio.wait_for(running, 60)
    return sink, quiet * 0.02


def test_interim_transcripts_grow_while_the_user_speaks_and_the_last_one_is_the_final(whisper, tmp_path):
    pcm = _speech(tmp_path, "Could you please tell me what the capital city of the country of France is")
    stt = StreamingWhisperSTTService(whisper, vad_stop_secs=0.2)
    sink, _quiet = asyncio.run(_utterance(stt, pcm))
    interims = [f.text for f in sink.frames if isinstance(f, InterimTranscriptionFrame)]
    (final,) = [f.text for f in sink.frames if type(f) is TranscriptionFrame]
    assert interims, "no interim transcript while the user spoke"
    assert "france" in final.lower() and "capital" in final.lower()
    assert stt.finals_from_interim == 1  # no second decode after the end of speech
    # The interims grew with the utterance: an early one is a prefix of what came later.
    assert len(interims[0]) <= len(final)


@pytest.mark.parametrize("quiet_frames", [10, 20])
def test_the_final_decode_starts_when_the_user_goes_quiet_not_when_the_vad_stops(whisper, tmp_path, quiet_frames):
    """The VAD reports the end of speech 200 ms after it; a decode begun at the quiet is the final.

    With 20 frames the VAD stops 0.4 s into the quiet while saying it heard 0.2 s (its model lags
    the sound): the decode begun at the quiet still holds every word by the utterance's own
    loudness, and is not made again after the stop."""
    pcm = _speech(tmp_path, "What is the capital of France")
    import numpy as np

    samples = np.frombuffer(pcm, dtype=np.int16)
    pcm = pcm[:2 * (int(np.flatnonzero(np.abs(samples) > 0.05 * np.abs(samples).max())[-1]) + 1)]  # espeak's trailing quiet off
    # No interim decodes while the user speaks: only the quiet can start one.
    stt = StreamingWhisperSTTService(whisper, vad_stop_secs=0.2, interim_every=1000)

    async def run() -> Collect:
        worker, sink, running = await _started(stt)
        await worker.queue_frame(VADUserStartedSpeakingFrame())
        for i in range(0, len(pcm), FRAME):
            await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))
        for _ in range(quiet_frames):  # the quiet the VAD waits for before it reports the stop
            await worker.queue_frame(InputAudioRawFrame(bytes(FRAME), RATE, 1))
        await await_until(lambda: len(stt._audio_buffer) == len(pcm) + quiet_frames * FRAME, 30, "all audio taken in")
        assert len(pcm) <= stt._decode_target < len(pcm) + 10 * FRAME, "no decode started when the user went quiet"
        await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2))
        await await_until(lambda: any(type(f) is TranscriptionFrame for f in sink.frames), 60, "final transcript")
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, 60)
        return sink

    sink = asyncio.run(run())
    (final,) = [f.text for f in sink.frames if type(f) is TranscriptionFrame]
    assert "france" in final.lower() and "capital" in final.lower()
    assert stt.finals_from_interim == 1  # the decode begun at the quiet was the final: none after the stop


def test_a_decode_waits_for_the_llms_read_ahead_running_and_then_gives_the_final(whisper, tmp_path):
    """Whisper and llama.cpp never compute at once (computegate.py): a decode asked for while a read
    ahead runs starts when it ends, and no read begins while the decode waits or runs."""
    from voicebot.computegate import gate

    pcm = _speech(tmp_path, "What is the capital of France")
    stt = StreamingWhisperSTTService(whisper, vad_stop_secs=0.2, interim_every=1000)

    async def run() -> Collect:
        worker, sink, running = await _started(stt)
        reading, release = asyncio.Event(), asyncio.Event()

        async def read_ahead() -> None:
            async with gate().read():
                reading.set()
                await release.wait()

        reader = asyncio.create_task(read_ahead())
        await reading.wait()
        await worker.queue_frame(VADUserStartedSpeakingFrame())
        for i in range(0, len(pcm), FRAME):
            await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))
        for _ in range(10):
            await worker.queue_frame(InputAudioRawFrame(bytes(FRAME), RATE, 1))
        await await_until(lambda: len(stt._audio_buffer) == len(pcm) + 10 * FRAME, 30, "all audio taken in")
        await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2))
        await await_until(lambda: stt._finals is not None, 30, "the final asked for")
        assert gate().decoding == 0 and not stt._finals.done()  # the decode waits for the read

        async def second_read() -> None:
            async with gate().read():
                seen.append((gate().decoding, len(decoded)))

        second = asyncio.create_task(second_read())
        release.set()
        await reader
        await await_until(lambda: any(type(f) is TranscriptionFrame for f in sink.frames), 60, "final transcript")
        await asyncio.wait_for(second, 30)
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, 60)
        return sink

    decoded: list[bytes] = []
    transcribe = stt._transcribe
    stt._transcribe = lambda pcm: decoded.append(pcm) or transcribe(pcm)  # type: ignore[method-assign]
    seen: list[tuple[int, int]] = []
    sink = asyncio.run(run())
    (final,) = [f.text for f in sink.frames if type(f) is TranscriptionFrame]
    assert "france" in final.lower()
    # The read asked for while the decodes waited began after all of them (a pause inside the sentence
    # may have started one more), with none running.
    assert decoded and seen == [(0, len(decoded))]


def test_the_encoder_window_follows_the_audio_with_a_margin():
    from voicebot.services.stt import WINDOW_MARGIN_FRAMES, encoder_frames

    assert encoder_frames(0) == 200  # silence alone: the margin, in whole seconds
    assert encoder_frames(164) == 400  # 1.6 s of speech + 2 s margin -> a 4 s window
    assert encoder_frames(2950) == 3000  # never past Whisper's own 30 s
    assert all(encoder_frames(n) >= n + WINDOW_MARGIN_FRAMES for n in range(0, 2800, 37))


def test_a_short_question_encodes_a_short_window_and_is_heard_right(tmp_path):
    import numpy as np

    whisper = load_whisper(windowed=True)
    seen: list[int] = []
    real = type(whisper).__mro__[1].encode  # faster-whisper's own encode, under the window cut

    def spy(self, features):
        seen.append(features.shape[-1])
        return real(self, features)

    # Not "the capital of Italy": tiny.en hears espeak-ng's "of Italy" as "immediately" on some runs (a
    # borderline decode that Whisper's temperature fallback then samples), windowed or not; and base,
    # the default since 2026-12-05, hears this voice's "legs" as "lands".
    pcm = _speech(tmp_path, "What is the boiling point of water?")
    audio = np.frombuffer(pcm + bytes(RATE), dtype=np.int16).astype(np.float32) / 32768.0
    original = type(whisper).__mro__[1].encode
    type(whisper).__mro__[1].encode = spy
    try:
        # temperature 0: no fallback that samples (a CI run once heard "wargo" for "water" that way);
        # what is tested is the window and the words, not the fallback.
        segments, _ = whisper.transcribe(audio, language="en", temperature=0.0)
        text = " ".join(s.text for s in segments).lower()
    finally:
        type(whisper).__mro__[1].encode = original
    assert "boiling" in text and "water" in text, text
    assert seen and max(seen) <= 600, seen  # about 3 s of audio: a 5-6 s window, not Whisper's 30 s


class _GatedWhisper:
    """The shipped model, but a decode of audio that begins with `gated` waits for `gate` (a slow decode)."""

    def __init__(self, model, gated: bytes) -> None:
        import numpy as np

        self.model, self.gate = model, threading.Event()
        self.prefix = np.frombuffer(gated[:RATE], dtype=np.int16).astype(np.float32) / 32768.0  # its first 0.5 s

    def transcribe(self, audio, **kwargs):
        import numpy as np

        if len(audio) >= len(self.prefix) and np.array_equal(audio[:len(self.prefix)], self.prefix):
            self.gate.wait(60)
        return self.model.transcribe(audio, **kwargs)


def test_finals_reach_the_llm_in_the_order_they_were_spoken(whisper, tmp_path):
    """A slow decode of the first sentence used to be overtaken by the next one's ready final."""
    first = _speech(tmp_path, "Hello Pearl, I have a question about the garden")
    second = _speech(tmp_path, "Is it going to rain")
    gated = _GatedWhisper(whisper, first)  # the first sentence's decodes are the slow ones
    stt = StreamingWhisperSTTService(gated, vad_stop_secs=0.2)

    async def run() -> list[str]:
        worker, sink, running = await _started(stt)

        async def say(pcm: bytes) -> None:
            await worker.queue_frame(VADUserStartedSpeakingFrame())
            for i in range(0, len(pcm), FRAME):
                await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))

        try:
            return await steps(worker, sink, say)
        finally:
            gated.gate.set()
            await worker.queue_frame(EndFrame())
            await asyncio.wait_for(running, 60)

    async def steps(worker, sink, say) -> list[str]:
        await say(first)
        await await_until(lambda: len(stt._audio_buffer) >= len(first), 30, "the first sentence taken in")
        await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=0.0))  # no decode holds it all yet
        await say(second)

        quiet = 0

        async def second_decoded() -> bool:
            nonlocal quiet
            await worker.queue_frame(InputAudioRawFrame(bytes(FRAME), RATE, 1))
            quiet += 1
            await asyncio.sleep(0.02)
            return stt._decoded_len >= len(second)

        await await_until(second_decoded, 60, "a decode of the whole second sentence")
        await await_until(lambda: len(stt._audio_buffer) == len(second) + quiet * FRAME, 30, "all audio taken in")
        # The VAD stops once it heard `stop_secs` of quiet: here, all the quiet the test sent.
        await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=quiet * FRAME / (RATE * 2)))
        await await_until(lambda: stt.finals_from_interim == 1, 30, "the second final taken from its decode")
        gated.gate.set()  # only now may the first sentence's decode finish
        finals = lambda: [f.text for f in sink.frames if type(f) is TranscriptionFrame]  # noqa: E731
        await await_until(lambda: len(finals()) == 2, 60, "both finals")
        return finals()

    texts = asyncio.run(run())
    assert "garden" in texts[0].lower() and "rain" in texts[1].lower(), texts


def test_a_phrase_whisper_repeats_is_heard_once():
    from voicebot.services.stt import collapse_repeats

    assert collapse_repeats("The local... The local... The local... The local") == "The local..."
    assert collapse_repeats("Are you today? Are you today?") == "Are you today?"
    assert collapse_repeats("What is it? What is it for?") == "What is it? What is it for?"
    assert collapse_repeats("No. No, thanks.") == "No. No, thanks."
    assert collapse_repeats("") == ""
    # One word looped on the silence after the words (a spoken conversation, 2026-12-06) is dropped...
    assert collapse_repeats("I would like to talk to a real person Lean, Lean, Lean, Lean,") == \
        "I would like to talk to a real person"
    # ...kept once inside the sentence, and a user's own few repeats are theirs.
    assert collapse_repeats("Please please please please call me back.") == "Please call me back."
    assert collapse_repeats("No, no, no, that's wrong.") == "No, no, no, that's wrong."
    assert collapse_repeats("My code is 4, 4, 4, 4.") == "My code is 4, 4, 4, 4."  # digits repeat in codes


def test_confident_words_are_speech_and_whispers_guess_at_silence_is_not():
    """Figures Whisper gave: tiny.en (2026-12-03) a browser user's 8 s question heard word for
    word, and its "you" on digital silence and "." on a hum; base (2026-12-05) a user's
    "Goodbye for now." through WebRTC, which was dropped and the turn went unanswered."""
    from types import SimpleNamespace

    from voicebot.services.stt import is_speech

    def Segment(text: str = " words", **figures: float) -> SimpleNamespace:
        return SimpleNamespace(text=text, **figures)

    limit = 0.4  # Pipecat's WhisperSTTService default, as the sessions use it
    assert is_speech(Segment(no_speech_prob=0.45, avg_logprob=-0.4), limit)  # was dropped: the turn went empty
    assert is_speech(Segment(no_speech_prob=0.16, avg_logprob=-1.3), limit)  # under the limit, whatever the words
    assert not is_speech(Segment(" you", no_speech_prob=0.98, avg_logprob=-0.93), limit)  # on silence
    assert not is_speech(Segment(" .", no_speech_prob=0.83, avg_logprob=-0.93), limit)  # on a hum
    assert not is_speech(Segment(no_speech_prob=0.5, avg_logprob=-1.2), limit)  # unsure words in the grey zone
    for no_speech, logprob in ((0.63, -0.75), (0.69, -0.53), (0.68, -0.58)):  # "Goodbye for now."
        assert is_speech(Segment(" Goodbye for now.", no_speech_prob=no_speech, avg_logprob=logprob), limit)
    assert is_speech(Segment(" Goodbye, Pearl.", no_speech_prob=0.60, avg_logprob=-0.84), limit)  # lost at -0.8
    assert not is_speech(Segment(" Goodbye.", no_speech_prob=0.92, avg_logprob=-0.3), limit)  # all but sure
    assert not is_speech(Segment(" . . . . .", no_speech_prob=0.1, avg_logprob=-0.2), limit)  # no word in it


class _SilentOnTheWhole:
    """The shipped model, but a decode of `cut` samples or more finds no speech (no segments), as
    Whisper base did for a user's whole "Goodbye for now." while its interim decodes heard it."""

    def __init__(self, model, cut: int) -> None:
        self.model, self.cut = model, cut

    def transcribe(self, audio, **kwargs):
        if len(audio) >= self.cut:
            return iter(()), None
        return self.model.transcribe(audio, **kwargs)


def test_an_utterance_whisper_finds_silent_as_a_whole_keeps_what_its_interims_heard(whisper, tmp_path):
    pcm = _speech(tmp_path, "Could you please tell me what the capital city of the country of France is")
    head = len(pcm) * 6 // 10 // FRAME * FRAME
    # Decodes of the first 60% hear words (plus the pause's margin); any of 80% or more find none.
    stt = StreamingWhisperSTTService(_SilentOnTheWhole(whisper, cut=(len(pcm) * 8 // 10) // 2), vad_stop_secs=0.2)

    async def run() -> list[str]:
        worker, sink, running = await _started(stt)
        try:
            await worker.queue_frame(VADUserStartedSpeakingFrame())
            for i in range(0, head, FRAME):
                await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))
            quiet = 0

            async def head_decoded() -> bool:
                nonlocal quiet  # a pause, as a user makes: each frame of it lets a new decode start
                await worker.queue_frame(InputAudioRawFrame(bytes(FRAME), RATE, 1))
                quiet += 1
                await asyncio.sleep(0.02)
                return stt._decoded_len >= head and bool(stt._last_words)

            await await_until(head_decoded, 60, "an interim decode of the first part")
            for i in range(head, len(pcm), FRAME):
                await worker.queue_frame(InputAudioRawFrame(pcm[i:i + FRAME], RATE, 1))
            await await_until(lambda: len(stt._audio_buffer) == len(pcm) + quiet * FRAME, 30, "all audio taken in")
            await worker.queue_frame(VADUserStoppedSpeakingFrame(stop_secs=0.0))
            finals = lambda: [f.text for f in sink.frames if type(f) is TranscriptionFrame]  # noqa: E731
            await await_until(finals, 60, "a final transcript")
            return [f.text for f in sink.frames if isinstance(f, (InterimTranscriptionFrame, TranscriptionFrame))]
        finally:
            await worker.queue_frame(EndFrame())
            await asyncio.wait_for(running, 60)

    *interims, final = asyncio.run(run())
    # The user is answered, not met with silence: the final is the words the interims heard last.
    assert interims and final and final == interims[-1], (interims, final)
    assert "could you" in final.lower() or "please" in final.lower(), final


def test_a_segment_taken_for_silence_is_logged_with_its_figures(caplog):
    """A turn heard as nothing looks like a hung bot to the user: the log says what Whisper made of it."""
    import logging
    from types import SimpleNamespace as Segment

    class Model:
        def transcribe(self, audio, **kwargs):
            return iter([Segment(text=" Goodbye for now.", no_speech_prob=0.83, avg_logprob=-1.2),
                         Segment(text=" Thank you.", no_speech_prob=0.1, avg_logprob=-0.3)]), None

    stt = StreamingWhisperSTTService(Model())
    with caplog.at_level(logging.DEBUG, logger="voicebot.stt"):
        assert stt._transcribe(bytes(16000 * 2)) == "Thank you."
    line = next(r.getMessage() for r in caplog.records if "for silence" in r.getMessage())
    assert "' Goodbye for now.'" in line and "no speech 0.83" in line and "log-probability -1.20" in line, line


def test_whispers_temperature_fallback_is_a_setting():
    """VOICE_STT_FALLBACK=0: the first decode stands. The conversation bench's two garbled
    utterances took 3.1-3.9 s of fallback decodes; without them, 0.4-0.8 s and worse words."""
    from types import SimpleNamespace, SimpleNamespace as Segment

    from django.test import override_settings

    from voicebot.services import ModelBundle

    asked: list[object] = []

    class Model:
        def transcribe(self, audio, **kwargs):
            asked.append(kwargs["temperature"])
            return iter([Segment(text=" Hello.", no_speech_prob=0.1, avg_logprob=-0.3)]), None

    assert StreamingWhisperSTTService(Model())._transcribe(bytes(3200)) == "Hello."
    assert StreamingWhisperSTTService(Model(), fallback=False)._transcribe(bytes(3200)) == "Hello."
    assert asked == [(0.0, 0.5), 0.0]  # one more try at 0.5, or none
    # The worker's bundle builds the session's recogniser from the setting.
    local = SimpleNamespace(stt_provider="local", stt_api=None, stt_keywords=(), stt_model=Model())
    with override_settings(VOICE_STT_FALLBACK=False):
        assert ModelBundle.make_stt(local).temperature == 0.0
    assert ModelBundle.make_stt(local).temperature == (0.0, 0.5)  # the default


def test_whisper_is_told_the_assistants_name_and_hears_it(whisper, tmp_path):
    """A name Whisper never heard is taken for common words ("Goodbye Pearl." in the tests' voice came
    out "Don't buy furl!", and the farewell was lost). Told the session's persona, it hears it."""
    speech = _speech(tmp_path, "Pearl, what time is it?")  # "Girl, what time is it?" untold
    told = StreamingWhisperSTTService(whisper, hotwords="Pearl")._transcribe(speech)
    untold = StreamingWhisperSTTService(whisper)._transcribe(speech)
    assert "pearl" in told.lower(), told
    assert "pearl" not in untold.lower(), untold  # what the hint is for


def test_pipecats_own_whisper_decode_is_told_the_name_too(whisper, tmp_path):
    """VOICE_STT_INTERIM=0: Pipecat's WhisperSTTService decodes each utterance, with the hint as its setting."""
    from voicebot.services.stt import SharedWhisperSTTService

    speech = _speech(tmp_path, "Pearl, what time is it?")

    async def heard(stt: SharedWhisperSTTService) -> str:
        return " ".join([frame.text async for frame in stt.run_stt(speech)])

    assert "pearl" in asyncio.run(heard(SharedWhisperSTTService(whisper, hotwords="Pearl"))).lower()
    assert "pearl" not in asyncio.run(heard(SharedWhisperSTTService(whisper))).lower()


def test_the_session_gives_its_persona_to_local_whisper_unless_the_setting_is_off():
    from types import SimpleNamespace

    from django.test import override_settings

    from voicebot.services import ModelBundle

    local = SimpleNamespace(stt_provider="local", stt_api=None, stt_keywords=(), stt_model=object())
    with override_settings(VOICE_STT_INTERIM=True):
        assert ModelBundle.make_stt(local, name="Pearl").hotwords == "Pearl"
        with override_settings(VOICE_STT_NAME_HINT=False):
            assert ModelBundle.make_stt(local, name="Pearl").hotwords == ""
    with override_settings(VOICE_STT_INTERIM=False):  # Pipecat's own decode
        assert ModelBundle.make_stt(local, name="Pearl")._settings.hotwords == "Pearl"
