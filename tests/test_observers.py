"""A session's observers (issue 14): behind one Pipecat observer, and what they do per audio frame."""
from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import EndFrame, Frame, TextFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from tests.waiting import await_until
from voicebot.observers import SessionObserver


class Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Seen(BaseObserver):
    """Records the text frames it is told of, and whose turn it was."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(observe_every_push=False)
        self.who, self.log = name, log

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, TextFrame):
            self.log.append((self.who, data.frame.text))


def test_each_observer_is_told_of_each_frame_once_in_order_through_a_real_pipeline():
    log: list[tuple[str, str]] = []

    async def run() -> None:
        # Three processors: each pushes every frame on, so each frame is pushed three times.
        worker = PipelineWorker(Pipeline([Passthrough(), Passthrough(), Passthrough()]),
                                params=PipelineParams(), idle_timeout_secs=None, enable_rtvi=False,
                                enable_turn_tracking=False,
                                observers=[SessionObserver([Seen("forwarder", log), Seen("monitor", log)])])
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        running = asyncio.create_task(runner.run())
        await worker.queue_frames([TextFrame("one"), TextFrame("two")])
        await await_until(lambda: len(log) >= 4, timeout=30, what="the observers told of both frames")
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, timeout=30)

    asyncio.run(run())
    assert log == [("forwarder", "one"), ("monitor", "one"), ("forwarder", "two"), ("monitor", "two")]


def test_an_observer_that_wants_every_push_is_refused():
    with pytest.raises(ValueError, match="first push"):
        SessionObserver([BaseObserver()])


def test_audio_levels_are_measured_and_sent_at_most_every_period_and_only_when_they_move(monkeypatch):
    """A quiet room (most of a call) used to be measured on every 20 ms frame once the period had
    passed, because only a level that moved reset the clock."""
    import struct

    from voicebot import forwarder as forwarder_module
    from voicebot.forwarder import LEVEL_PERIOD, EventForwarder

    measured: list[float] = []
    real = forwarder_module.audio_level
    monkeypatch.setattr(forwarder_module, "audio_level", lambda pcm: measured.append(1) or real(pcm))
    forwarder = EventForwarder("session-1")
    forwarder.emit = lambda kind, payload: sent.append(payload["level"])  # type: ignore[method-assign]
    sent: list[float] = []
    quiet, loud = bytes(640), struct.pack("<320h", *([8000, -8000] * 160))
    now = 100.0
    for _ in range(100):  # 2 s of a quiet room, 20 ms frames
        forwarder._level("user", quiet, now)
        now += 0.02
    assert sent == [0.0]  # told once
    assert len(measured) <= 2 / LEVEL_PERIOD + 1  # measured once a period, not on every frame
    for _ in range(20):  # the user speaks
        forwarder._level("user", loud, now)
        now += 0.02
    assert len(sent) == 2 and sent[1] > 0.5  # within a period
