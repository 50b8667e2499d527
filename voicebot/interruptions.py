"""How much the user must say before the assistant stops talking for them, in seconds of speech.

Pipecat has the words' version (MinWordsUserTurnStartStrategy, which waits for the
transcript); this is the same rule measured on the audio itself, for assistants whose
callers say "mm-hm" and "right" while it talks: the VAD hears speech at once, the
words come later or never.
"""
from __future__ import annotations

from typing import Any

from pipecat.frames.frames import (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, Frame, InputAudioRawFrame,
                                   VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy


class MinSecondsUserTurnStartStrategy(BaseUserTurnStartStrategy):
    """A user turn starts once the VAD has heard `min_seconds` of speech while the bot speaks,
    and as soon as it hears any while the bot is quiet."""

    def __init__(self, *, min_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min_seconds = min_seconds
        self._bot_speaking = False
        self._user_speaking = False
        self._heard = 0.0  # seconds of the current run of speech

    async def handle_user_turn_started(self) -> None:
        self._bot_speaking = False  # the bot was interrupted (or was quiet): the next turn starts afresh

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._user_speaking, self._heard = True, 0.0
            if not self._bot_speaking:
                await self.trigger_user_turn_started()
                return ProcessFrameResult.STOP
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._user_speaking = False
        elif isinstance(frame, InputAudioRawFrame) and self._user_speaking and self._bot_speaking:
            self._heard += frame.num_frames / frame.sample_rate
            if self._heard >= self._min_seconds:
                self._user_speaking = False  # one trigger per run of speech
                await self.trigger_user_turn_started()
                return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE
