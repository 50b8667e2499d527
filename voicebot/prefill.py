"""The user's words read into the local LLM's prompt cache while they are still speaking.

Between the STT and the user aggregator, this watches the transcripts of the turn in
progress and, as they grow, has the LLM service read the conversation plus the words so
far (`VoiceLLMService.prefill`). When the turn ends, its prompt differs from what llama.cpp
already read only by the last words and the chat template's closing tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import (Frame, InterimTranscriptionFrame, TranscriptionFrame, UserStartedSpeakingFrame,
                                   UserStoppedSpeakingFrame)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class UserWordsPrefill(FrameProcessor):
    """Reads the turn's words ahead into the LLM each time at least `min_new_words` more are
    heard (at most `max_reads` times a turn; 0: no limit).

    An interim transcript's last word may be cut off mid-word, so it is left out. Earlier
    segments of the turn go first, joined with spaces as the user aggregator joins them, so
    the prompt read ahead is a prefix of the turn's.

    On the conversation bench (docs/benchmarks.md), reading at every second new word took
    the LLM's first token from ~900 to ~610 ms p50 and the final transcript from ~140 to
    ~270 ms after the VAD stop; one read a turn, ~770 and ~200 ms. Every second word won.
    Since then a read never runs beside a Whisper decode (computegate.py) and reads only
    the words (not the chat template's end of the message; `VoiceLLMService._read_open`).
    """

    def __init__(self, llm: Any, context: Any, *, min_new_words: int = 2, max_reads: int = 0,
                 gone_quiet: Callable[[], bool] | None = None) -> None:
        super().__init__(name="UserWordsPrefill")
        self.llm = llm
        self.context = context
        # Whether the user has gone quiet (the STT's own measure); then no read begins. Whisper's
        # decode of the quiet, which becomes the turn's final, would wait for it: on the conversation
        # bench an interim landing as the user went quiet began a read of 8-9 tokens, and the final
        # came 260-290 ms later for it in 3 of 21 turns. Left unread, those words cost the turn's
        # request ~25 ms a token instead.
        self.gone_quiet = gone_quiet or (lambda: False)
        self.min_new_words = min_new_words
        self.max_reads = max_reads
        self._turn_reads = 0
        self._finals: list[str] = []
        self._read: list[str] = []  # the words of this turn read ahead last

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterimTranscriptionFrame):
            self._consider(" ".join([*self._finals, frame.text]).split()[:-1])
        elif isinstance(frame, TranscriptionFrame):
            # Not read on its own: the turn's end, and its real request, usually follows at once,
            # and would then wait for this read to finish.
            self._finals.append(frame.text.strip())
        elif isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            # A turn begins or has ended (its prompt is now the real request's to read).
            self._finals, self._read, self._turn_reads = [], [], 0
        await self.push_frame(frame, direction)

    def _consider(self, words: list[str]) -> None:
        # Words that do not continue the last read (Whisper revised them, or a new turn) are new.
        continued = len(self._read) if words[:len(self._read)] == self._read else 0
        if ((self.max_reads and self._turn_reads >= self.max_reads) or len(words) < continued + self.min_new_words
                or self.gone_quiet()):
            return
        if self.llm.prefill([*self.context.get_messages(), {"role": "user", "content": " ".join(words)}]):
            self._read = words
            self._turn_reads += 1
