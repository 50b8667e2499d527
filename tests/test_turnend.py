"""A heard question ends the user's turn, whatever the smart-turn model judged, and a statement
it judged unfinished is answered ahead while its silence runs out (voicebot/turnend.py)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, BaseTurnParams, EndOfTurnState
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (EagerEndOfTurnCancelFrame, InputAudioRawFrame, TranscriptionFrame,
                                   VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from voicebot.turnend import QuestionEndsTurnStopStrategy, asks

from tests.waiting import await_until


class Unfinished(BaseTurnAnalyzer):
    """A turn model that judges every turn unfinished, until its silence runs out (`SILENCE_RUNS_OUT`)."""

    def __init__(self) -> None:
        super().__init__(sample_rate=16000)
        self.cleared = 0
        self.silence_ran_out = False

    @property
    def speech_triggered(self) -> bool:
        return False

    @property
    def params(self) -> BaseTurnParams:
        return BaseTurnParams()

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        if buffer == SILENCE_RUNS_OUT.audio:
            self.silence_ran_out = True
        return EndOfTurnState.COMPLETE if self.silence_ran_out else EndOfTurnState.INCOMPLETE

    async def analyze_end_of_turn(self):
        return EndOfTurnState.INCOMPLETE, None

    def clear(self) -> None:
        self.cleared += 1


# The audio frame after which the turn model's silence timeout has run out (COMPLETE).
SILENCE_RUNS_OUT = InputAudioRawFrame(audio=b"\x00\x01" * 160, sample_rate=16000, num_channels=1)


async def _turn(*frames, speculate: bool = False, log: list[str] | None = None, analyzer: BaseTurnAnalyzer | None = None,
                judge_aside: bool = False, then: Any = None) -> list[str]:
    """Feed frames to the strategy, as the user aggregator does; whether it ended the turn.

    `log` gets every decision in order: "answer ahead: <text>", "withdrawn", "answer" (an
    ordinary inference), "stopped" and "stopped, answered ahead". `then(strategy)` is awaited
    after the frames, before the strategy is cleaned up.
    """
    strategy = QuestionEndsTurnStopStrategy(turn_analyzer=analyzer or Unfinished(), speculate=speculate,
                                            judge_aside=judge_aside)
    ended: list[str] = []
    log = [] if log is None else log

    @strategy.event_handler("on_user_turn_stopped")
    async def _stopped(_strategy, params):
        await strategy.handle_user_turn_stopped()  # as Pipecat's UserTurnController does at a turn's end
        ended.append("stopped")
        log.append("stopped, answered ahead" if params.confirms_speculation else "stopped")

    @strategy.event_handler("on_user_turn_inference_triggered")
    async def _inference(_strategy, speculation):
        log.append(f"answer ahead: {speculation.text}" if speculation else "answer")

    @strategy.event_handler("on_user_turn_speculation_cancelled")
    async def _withdrawn(_strategy):
        log.append("withdrawn")

    await strategy.setup(FrameProcessorSetup(clock=SystemClock(), task_manager=TaskManager(),
                                             pipeline_worker=None))  # type: ignore[arg-type]
    try:
        await strategy.handle_user_turn_started()
        for frame in frames:
            await strategy.process_frame(frame)
        if then is not None:
            await then(strategy)
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


def test_a_question_heard_before_the_user_went_on_does_not_end_the_turn_at_the_next_stop():
    """The next stop's own transcript has not come yet: the earlier question is not the turn's end."""
    frames = [VADUserStartedSpeakingFrame(), _heard("Can you tell me?"), VADUserStartedSpeakingFrame(), _stop()]
    assert asyncio.run(_turn(*frames)) == []


def test_what_counts_as_a_question():
    assert asks("What did I just say?") and asks('He asked "why?"') and asks("Really?  ")
    assert not asks("Remind me to call mom.") and not asks("What is the") and not asks("")


def test_a_statement_is_answered_ahead_and_the_held_answer_kept_when_the_silence_runs_out():
    """The 0.6-1 s a statement judged unfinished waits is spent generating its answer."""
    log: list[str] = []
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("I feel a bit tired today."), SILENCE_RUNS_OUT]
    assert asyncio.run(_turn(*frames, speculate=True, log=log)) == ["stopped"]
    # One inference for the turn, begun before its end; the end only releases it.
    assert log == ["answer ahead: I feel a bit tired today.", "stopped, answered ahead"]


def test_the_user_going_on_withdraws_the_answer_and_the_whole_turn_is_answered():
    log: list[str] = []
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("I feel a bit tired today,"),
              VADUserStartedSpeakingFrame(), _stop(), _heard("because I slept badly."), SILENCE_RUNS_OUT]
    assert asyncio.run(_turn(*frames, speculate=True, log=log)) == ["stopped"]
    assert log == ["answer ahead: I feel a bit tired today,", "withdrawn",
                   "answer ahead: I feel a bit tired today, because I slept badly.", "stopped, answered ahead"]


def test_a_question_is_not_answered_ahead_it_ends_the_turn():
    log: list[str] = []
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("What did I just say?")]
    assert asyncio.run(_turn(*frames, speculate=True, log=log)) == ["stopped"]
    assert log == ["answer", "stopped"]


def test_an_answer_the_llm_withdrew_is_asked_for_again_at_the_turns_end():
    """A speculative answer that wants a tool is withdrawn by the LLM (tools run only for an ended turn)."""
    log: list[str] = []
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("Jot down that the plumber comes Thursday."),
              EagerEndOfTurnCancelFrame(), SILENCE_RUNS_OUT]
    assert asyncio.run(_turn(*frames, speculate=True, log=log)) == ["stopped"]
    assert log == ["answer ahead: Jot down that the plumber comes Thursday.", "answer", "stopped"]


def test_without_speculation_a_statement_is_answered_only_when_its_silence_runs_out():
    log: list[str] = []
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("I feel a bit tired today."), SILENCE_RUNS_OUT]
    assert asyncio.run(_turn(*frames, speculate=False, log=log)) == ["stopped"]
    assert log == ["answer", "stopped"]


class Judging(Unfinished):
    """A turn model whose verdict at the VAD's stop comes only when the test gives it (`give`)."""

    def __init__(self, verdict: EndOfTurnState, log: list[str]) -> None:
        super().__init__()
        self.verdict, self.log = verdict, log
        self.asked = 0
        self.answered = 0
        self.release = asyncio.Event()

    async def analyze_end_of_turn(self):
        self.asked += 1
        await self.release.wait()
        self.answered += 1
        self.log.append(f"verdict: {self.verdict.name.lower()}")
        return self.verdict, None


async def _judged(strategy: QuestionEndsTurnStopStrategy, analyzer: Judging) -> None:
    """Give the verdict, and wait until the strategy has taken it."""
    analyzer.release.set()
    await await_until(lambda: strategy._judging is None or strategy._judging.done(), 30, "the verdict to be taken")


async def _asked(analyzer: Judging) -> None:
    """Wait until the strategy is waiting for the turn model's verdict."""
    await await_until(lambda: analyzer.asked, 30, "the turn model to be asked")


def test_a_question_heard_while_the_turn_model_still_judges_ends_the_turn_at_once():
    """The final came 5 ms after the VAD's stop and waited ~100 ms for the smart-turn verdict."""
    log: list[str] = []
    analyzer = Judging(EndOfTurnState.INCOMPLETE, log)

    async def then(strategy):
        await _asked(analyzer)
        await strategy.process_frame(_heard("What did I just say?"))
        assert analyzer.answered == 0 and log == ["answer", "stopped"]
        await _judged(strategy, analyzer)

    frames = [VADUserStartedSpeakingFrame(), _stop()]
    assert asyncio.run(_turn(*frames, log=log, analyzer=analyzer, judge_aside=True, then=then)) == ["stopped"]
    assert log == ["answer", "stopped"]  # the verdict, never reached, is not taken after the turn's end


def test_a_statement_is_answered_ahead_while_the_turn_model_judges_and_kept_when_it_judges_complete():
    log: list[str] = []
    analyzer = Judging(EndOfTurnState.COMPLETE, log)

    async def then(strategy):
        await _asked(analyzer)
        await strategy.process_frame(_heard("I feel a bit tired today."))
        assert log == ["answer ahead: I feel a bit tired today."]
        await _judged(strategy, analyzer)

    frames = [VADUserStartedSpeakingFrame(), _stop()]
    assert asyncio.run(_turn(*frames, speculate=True, log=log, analyzer=analyzer, judge_aside=True,
                             then=then)) == ["stopped"]
    assert log == ["answer ahead: I feel a bit tired today.", "verdict: complete", "stopped, answered ahead"]


def test_a_transcript_that_comes_before_the_judging_begins_is_not_lost():
    """The final can be the next frame, handled before the task that asks the turn model has run."""
    frames = [VADUserStartedSpeakingFrame(), _stop(), _heard("What did I just say?")]
    assert asyncio.run(_turn(*frames, analyzer=Judging(EndOfTurnState.INCOMPLETE, []), judge_aside=True)) == ["stopped"]


def test_a_verdict_on_speech_the_user_went_on_with_is_dropped():
    log: list[str] = []
    analyzer = Judging(EndOfTurnState.COMPLETE, log)

    async def then(strategy):
        await _asked(analyzer)
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await strategy.process_frame(_heard("I feel a bit tired today,"))
        await _judged(strategy, analyzer)

    frames = [VADUserStartedSpeakingFrame(), _stop()]
    assert asyncio.run(_turn(*frames, log=log, analyzer=analyzer, judge_aside=True, then=then)) == []
    assert log == []  # not "verdict: complete" and "stopped": the user was speaking again


def test_without_judging_aside_the_transcript_waits_for_the_verdict():
    log: list[str] = []
    analyzer = Judging(EndOfTurnState.INCOMPLETE, log)

    async def stop_then_give():
        # The verdict is given once the strategy waits for it: the stop's frame is still being handled.
        asyncio.get_running_loop().call_soon(analyzer.release.set)
        return _stop()

    async def run():
        frames = [VADUserStartedSpeakingFrame(), await stop_then_give(), _heard("What did I just say?")]
        return await _turn(*frames, log=log, analyzer=analyzer, judge_aside=False)

    assert asyncio.run(run()) == ["stopped"]
    assert log == ["verdict: incomplete", "answer", "stopped"]
