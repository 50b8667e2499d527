"""What UserWordsPrefill asks the LLM to read while the user speaks (voicebot/prefill.py).
The read itself, against llama.cpp, is tests/test_guards.py's
test_the_users_words_are_read_while_they_speak_and_the_turn_reads_only_the_last_ones."""
from __future__ import annotations

import asyncio

from pipecat.frames.frames import (InterimTranscriptionFrame, TranscriptionFrame, UserStartedSpeakingFrame,
                                   UserStoppedSpeakingFrame)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from voicebot.prefill import UserWordsPrefill

AT = "2026-12-05T00:00:00Z"


class Reader:
    """Stands for VoiceLLMService.prefill: records what it was asked to read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def prefill(self, messages: list[dict]) -> bool:
        self.read.append(messages[-1]["content"])
        return True


def _reads(*frames, **kwargs) -> list[str]:
    reader = Reader()
    context = LLMContext(messages=[{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}])
    asyncio.run(run_test(UserWordsPrefill(reader, context, **kwargs), frames_to_send=list(frames)))
    return reader.read


def test_the_words_so_far_are_read_but_an_interims_last_word_which_may_be_cut():
    assert _reads(UserStartedSpeakingFrame(),
                  InterimTranscriptionFrame("What is the capi", "u", AT),
                  InterimTranscriptionFrame("What is the capital of", "u", AT),  # one word more: not worth a read
                  InterimTranscriptionFrame("What is the capital of France and", "u", AT)) == [
        "What is the", "What is the capital of France"]


def test_earlier_segments_of_the_turn_go_first():
    assert _reads(UserStartedSpeakingFrame(),
                  TranscriptionFrame("Hello Pearl.", "u", AT),  # a final alone is not read: the turn may end now
                  InterimTranscriptionFrame("how are you to", "u", AT)) == ["Hello Pearl. how are you"]


def test_words_that_do_not_continue_the_last_read_are_read_afresh():
    """Whisper revised the start ("Where" heard as "We're"), so the prompt read is no prefix."""
    assert _reads(UserStartedSpeakingFrame(),
                  InterimTranscriptionFrame("We're is the nearest", "u", AT),
                  InterimTranscriptionFrame("Where is the nearest", "u", AT)) == [
        "We're is the", "Where is the"]


def test_reads_a_turn_can_be_capped():
    assert _reads(UserStartedSpeakingFrame(),
                  InterimTranscriptionFrame("What is the capital", "u", AT),
                  InterimTranscriptionFrame("What is the capital of France and why", "u", AT),
                  max_reads=1) == ["What is the"]


def test_no_read_begins_once_the_user_has_gone_quiet():
    """Whisper's decode of the quiet, the turn's final, would wait for the read: the turn reads those words itself."""
    quiet = iter([False, True, False])  # the STT's measure as each interim comes: a pause, then more words
    assert _reads(UserStartedSpeakingFrame(),
                  InterimTranscriptionFrame("What is the capi", "u", AT),
                  InterimTranscriptionFrame("What is the capital of France", "u", AT),
                  InterimTranscriptionFrame("What is the capital of France and why is", "u", AT),
                  gone_quiet=lambda: next(quiet)) == ["What is the", "What is the capital of France and why"]
