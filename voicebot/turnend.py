"""When a user turn ends: Pipecat's smart-turn strategy, with a heard question ending it.

The smart-turn model judges from the audio alone whether the user is done. On the
conversation bench it judged a quarter of complete questions unfinished ("What did I
just say?"), and each of those turns then waited `VOICE_TURN_INCOMPLETE_WAIT_SECS` (1 s)
of silence before the assistant answered. Whisper's transcript carries what the audio
model cannot see: a sentence it ends with a question mark is a question asked. So once
the user has stopped (the VAD's stop) and the final transcript ends with "?", the turn
is over, whatever the model judged. A statement ("... on Thursday at 10.") still waits:
Whisper puts a full stop after a pause mid-sentence as readily as after a finished one.
"""
from __future__ import annotations

import logging
from typing import Any

from pipecat.frames.frames import TranscriptionFrame, VADUserStoppedSpeakingFrame
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy

logger = logging.getLogger("voicebot.turnend")


def asks(text: str) -> bool:
    """Whether a transcript ends on a question mark (closing quotes and brackets aside)."""
    return text.rstrip().rstrip("\"')]").endswith("?")


class QuestionEndsTurnStopStrategy(TurnAnalyzerUserTurnStopStrategy):
    """TurnAnalyzerUserTurnStopStrategy that also ends the turn on a final transcript ending with "?"."""

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        await super()._handle_transcription(frame)
        await self._end_if_asked()

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        await super()._handle_vad_user_stopped_speaking(frame)
        await self._end_if_asked()  # the transcript may have come while the model was judging

    async def _end_if_asked(self) -> None:
        # _vad_stopped: the user has stopped (a question heard mid-flow is not the end);
        # not _turn_complete: the model already ended it, or will at its silence timeout.
        if self._vad_stopped and not self._vad_user_speaking and not self._turn_complete and asks(self._text):
            logger.debug("[VoiceSession] the turn ends on a question the turn model judged unfinished")
            self._turn_complete = True
            await self._maybe_trigger_user_turn_stopped()


def turn_stop_strategy(**kwargs: Any) -> TurnAnalyzerUserTurnStopStrategy:
    """The session's turn stop strategy (VOICE_TURN_QUESTION_ENDS: whether a question ends a turn)."""
    from django.conf import settings

    cls = QuestionEndsTurnStopStrategy if settings.VOICE_TURN_QUESTION_ENDS else TurnAnalyzerUserTurnStopStrategy
    return cls(**kwargs)
