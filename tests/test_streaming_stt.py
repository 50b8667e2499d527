"""Whisper decoding while the user speaks: interim transcripts, and the final one ready at the end.

The service runs in a real Pipecat pipeline with the shipped Whisper model. Frames are fed
by the test, and every wait is a bounded poll for what the service has done, so the
test does not depend on how fast this machine decodes.
"""
from __future__ import annotations

import asyncio
import subprocess
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


async def _utterance(stt: StreamingWhisperSTTService, pcm: bytes) -> tuple[Collect, float]:
    """Speak `pcm` into the service, then quiet until a decode holds the whole utterance, then the VAD stop."""
    sink = Collect()
    worker = PipelineWorker(Pipeline([stt, sink]), params=PipelineParams(audio_in_sample_rate=RATE),
                            enable_rtvi=False, idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await await_until(lambda: stt.sample_rate == RATE, 30, "pipeline started")
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
