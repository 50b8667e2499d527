"""A heard question ends the user's turn, whatever the smart-turn model judged (voicebot/turnend.py)."""
from __future__ import annotations

import asyncio
import time

import pytest
from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, BaseTurnParams, EndOfTurnState
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from voicebot.turnend import QuestionEndsTurnStopStrategy, asks


class Unfinished(BaseTurnAnalyzer):
    """A turn model that judges every turn unfinished (and never times out within a test)."""

    def __init__(self) -> None:
        super().__init__(sample_rate=16000)
        self.cleared = 0

    @property
    def speech_triggered(self) -> bool:
        return False

    @property
    def params(self) -> BaseTurnParams:
        return BaseTurnParams()

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        return EndOfTurnState.INCOMPLETE

    async def analyze_end_of_turn(self):
        return EndOfTurnState.INCOMPLETE, None

    def clear(self) -> None:
        self.cleared += 1


async def _turn(*frames) -> list[str]:
    """Feed frames to the strategy, as the user aggregator does; what it decided."""
    strategy = QuestionEndsTurnStopStrategy(turn_analyzer=Unfinished())
    ended: list[str] = []

    @strategy.event_handler("on_user_turn_stopped")
    async def _stopped(_strategy, *args, **kwargs):
        ended.append("stopped")

    await strategy.setup(FrameProcessorSetup(clock=SystemClock(), task_manager=TaskManager(),
                                             pipeline_worker=None))  # type: ignore[arg-type]
    try:
        await strategy.handle_user_turn_started()
        for frame in frames:
            await strategy.process_frame(frame)
    finally:
        await strategy.cleanup()
    return ended


def _stop() -> VADUserStoppedSpeakingFrame:
    return VADUserStoppedSpeakingFrame(stop_secs=0.2, timestamp=time.time())


def _heard(text: str) -> TranscriptionFrame:
    frame = TranscriptionFrame(text, "user", "2026-12-05T00:00:00Z")
    frame.finalized = True
    return frame


@pytest.mark.parametrize("order", ["transcript after the stop", "transcript first"])
def test_a_question_the_turn_model_judged_unfinished_ends_the_turn(order):
    """"What did I just say?" waited 1 s of silence on the conversation bench: the model said unfinished."""
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("What did I just say?")]
    if order == "transcript first":
        frames = [VADUserStartedSpeakingFrame(), _heard("What did I just say?"), _stop()]
    assert asyncio.run(_turn(*frames)) == ["stopped"]


def test_a_statement_still_waits_for_the_turn_model():
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("Remember that the plumber is coming on Thursday.")]
    assert asyncio.run(_turn(*frames)) == []


def test_a_question_heard_while_the_user_still_speaks_does_not_end_the_turn():
    frames = [VADUserStartedSpeakingFrame(), _stop(), VADUserStartedSpeakingFrame(), _heard("Can you tell me?")]
    assert asyncio.run(_turn(*frames)) == []


def test_what_counts_as_a_question():
    assert asks("What did I just say?") and asks('He asked "why?"') and asks("Really?  ")
    assert not asks("Remind me to call mom.") and not asks("What is the") and not asks("")
