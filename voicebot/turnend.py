"""When a user turn ends: Pipecat's smart-turn strategy, with a heard question ending it,
and an answer begun while the turn model waits on a statement.

The smart-turn model judges from the audio alone whether the user is done. On the
conversation bench it judged a quarter of complete questions unfinished ("What did I
just say?"), and each of those turns then waited `VOICE_TURN_INCOMPLETE_WAIT_SECS` (1 s)
of silence before the assistant answered. Whisper's transcript carries what the audio
model cannot see: a sentence it ends with a question mark is a question asked. So once
the user has stopped (the VAD's stop) and the final transcript ends with "?", the turn
is over, whatever the model judged. A statement ("... on Thursday at 10.") still waits:
Whisper puts a full stop after a pause mid-sentence as readily as after a finished one.

That wait need not be idle (VOICE_TURN_SPECULATE). While a statement judged unfinished
waits out its silence, the LLM already answers it, speculatively: Pipecat runs the
inference on a provisional context and its SpeculationGate holds the answer back. The
silence running out confirms the turn and the held answer is spoken at once; the user
speaking again withdraws it, and the turn goes on. Pipecat's own EagerUserTurnStopStrategy
does this for STT services that predict the end of a turn (Deepgram Flux); here the
prediction is "the user stopped and the turn model wants more silence".

And the transcript is not held behind the verdict (VOICE_TURN_JUDGE_ASIDE). Pipecat's strategy
awaits the turn model at the VAD's stop (~50-120 ms on 2 cores), and the user aggregator hands
it frames one at a time, so a final transcript that came 5 ms after the stop waited for the
verdict before its question could end the turn or its statement be answered ahead. The verdict
is now reached beside the frames that follow; one reached for speech the user has since gone
on with is dropped.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pipecat.frames.frames import (EagerEndOfTurnCancelFrame, Frame, TranscriptionFrame,
                                   VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop.eager_match_policy import NormalizedMatch
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy

logger = logging.getLogger("voicebot.turnend")


def asks(text: str) -> bool:
    """Whether a transcript ends on a question mark (closing quotes and brackets aside)."""
    return text.rstrip().rstrip("\"')]").endswith("?")


class QuestionEndsTurnStopStrategy(TurnAnalyzerUserTurnStopStrategy):
    """TurnAnalyzerUserTurnStopStrategy that also ends the turn on a final transcript ending with "?",
    and with `speculate`, answers a statement while the turn model waits for more silence."""

    def __init__(self, *, question_ends: bool = True, speculate: bool = False, judge_aside: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.question_ends = question_ends
        self.speculate = speculate
        self.judge_aside = judge_aside
        self._judging: asyncio.Task[None] | None = None  # the turn model's verdict on the latest stop
        self._heard: list[str] = []  # this turn's final transcripts, as the user aggregator joins them
        self._heard_latest = False  # whether a final came since the user last began speaking
        self._speculation: UserTurnSpeculation | None = None
        self._match = NormalizedMatch()
        self.speculations = {"started": 0, "confirmed": 0, "withdrawn": 0}  # for the tests and the bench

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, EagerEndOfTurnCancelFrame):
            # The LLM withdrew it (the speculative answer wanted a tool: tools run only for a turn
            # that has ended). The turn's end then runs the inference as usual.
            self._speculation = None
        return await super().process_frame(frame)

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        self._heard.append(frame.text)
        self._heard_latest = True
        await super()._handle_transcription(frame)
        await self._after_stop()

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        if not self.judge_aside:
            await self._judge(frame)
            return
        # What Pipecat's handler sets before it awaits the model, set now: the final transcript
        # may be the very next frame, and the task below has not begun yet when it comes.
        self._vad_user_speaking, self._vad_stopped = False, True
        self._judging = self.task_manager.create_task(self._judge(frame), f"{self}::judge")

    async def _judge(self, frame: VADUserStoppedSpeakingFrame) -> None:
        await super()._handle_vad_user_stopped_speaking(frame)
        await self._after_stop()  # the transcript may have come while the model was judging

    async def _stop_judging(self) -> None:
        """Drop a verdict still being reached: the speech it judged is not the turn's end any more."""
        judging, self._judging = self._judging, None
        # Not from inside it: the verdict itself can end the turn, and the turn's end resets this.
        if judging is not None and not judging.done() and judging is not asyncio.current_task():
            await self.task_manager.cancel_task(judging)

    async def cleanup(self) -> None:
        await self._stop_judging()
        await super().cleanup()

    async def _handle_vad_user_started_speaking(self, frame: VADUserStartedSpeakingFrame) -> None:
        await self._stop_judging()
        self._heard_latest = False
        await self._withdraw("the user went on speaking")
        await super()._handle_vad_user_started_speaking(frame)

    @property
    def _turn_text(self) -> str:
        """This turn's final transcripts, joined as the user aggregator joins them."""
        return " ".join(part.strip() for part in self._heard if part.strip())

    async def _reset(self) -> None:
        await self._stop_judging()
        self._heard, self._heard_latest = [], False
        await super()._reset()
        # Still held here, the turn ended some other way (the stop watchdog, the session's end):
        # nothing else withdraws the answer.
        await self._withdraw("the turn ended without it")

    async def _after_stop(self) -> None:
        # _vad_stopped: the user has stopped (a question heard mid-flow is not the end);
        # not _turn_complete: the model already ended it, or will at its silence timeout;
        # _heard_latest: the transcript is of what the user said last, not of an earlier stretch.
        if (not self._vad_stopped or self._vad_user_speaking or self._turn_complete or not self._text
                or not self._heard_latest):
            return
        if self.question_ends and asks(self._text):
            logger.debug("[VoiceSession] the turn ends on a question the turn model judged unfinished")
            self._turn_complete = True
            await self._maybe_trigger_user_turn_stopped()
        elif self.speculate:
            await self._speculate()

    async def _speculate(self) -> None:
        text = self._turn_text
        if self._speculation is not None:
            if self._speculation.text == text:
                return
            await self._withdraw("the turn heard more")
        self._speculation = UserTurnSpeculation(text=text)
        self.speculations["started"] += 1
        logger.debug("[VoiceSession] answering ahead while the turn model waits for more silence")
        await self.trigger_user_turn_inference_triggered(speculation=self._speculation)

    async def _withdraw(self, why: str) -> None:
        if self._speculation is None:
            return
        self._speculation = None
        self.speculations["withdrawn"] += 1
        logger.debug("[VoiceSession] the answer begun ahead is withdrawn: %s", why)
        await self.trigger_user_turn_speculation_cancelled()

    async def trigger_user_turn_stopped(self, *, enable_user_speaking_frames: bool | None = None) -> None:
        """End the turn; a speculative answer to the same words is kept, not asked for again."""
        if self._speculation is not None and self._match.matches(self._speculation.text, self._turn_text):
            self._speculation = None
            self.speculations["confirmed"] += 1
            logger.debug("[VoiceSession] the turn ended as answered ahead: the held answer is spoken")
            await self.trigger_user_turn_finalized(enable_user_speaking_frames=enable_user_speaking_frames,
                                                   confirms_speculation=True)
            return
        await self._withdraw("the turn's words differ from those answered")
        await super().trigger_user_turn_stopped(enable_user_speaking_frames=enable_user_speaking_frames)


def turn_stop_strategy(**kwargs: Any) -> TurnAnalyzerUserTurnStopStrategy:
    """The session's turn stop strategy: VOICE_TURN_QUESTION_ENDS (a question ends a turn),
    VOICE_TURN_SPECULATE (a statement is answered while the turn model waits) and
    VOICE_TURN_JUDGE_ASIDE (the transcript is not held behind the turn model's verdict)."""
    from django.conf import settings

    if not (settings.VOICE_TURN_QUESTION_ENDS or settings.VOICE_TURN_SPECULATE):
        return TurnAnalyzerUserTurnStopStrategy(**kwargs)
    return QuestionEndsTurnStopStrategy(question_ends=settings.VOICE_TURN_QUESTION_ENDS,
                                        speculate=settings.VOICE_TURN_SPECULATE,
                                        judge_aside=settings.VOICE_TURN_JUDGE_ASIDE, **kwargs)
