"""What an assistant does on its own in a call: its first message, a prompt when the user goes
quiet, ending the call (end-call phrases, the end_call tool, silence), a max-duration warning.

`CallMonitor` is a Pipecat observer on the session's pipeline: it sees who is speaking
and what the assistant said, and acts through its `BotHooks` (speak a line, end the
session). The settings come from the assistant (AssistantRecord.behaviour) in the job.

Pipecat's own UserIdleController (the user aggregator's `user_idle_timeout`) is not used
for the silence: its clock starts only when the bot stops speaking, so a caller who
never speaks to an assistant that waits for them would never be prompted, and it knows
nothing of a paused session; the prompt-then-end sequence would be ours anyway.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, LLMFullResponseEndFrame,
                                   LLMFullResponseStartFrame, LLMMessagesAppendFrame, LLMTextFrame,
                                   UserStartedSpeakingFrame, UserStoppedSpeakingFrame)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import FunctionCallParams, LLMService

logger = logging.getLogger("voicebot.behaviour")

SPEAKS_FIRST = "assistant-speaks-first"
# When the line said before ending never plays (its speech failed), the session still ends.
END_FALLBACK_SECONDS = 15.0

END_CALL = FunctionSchema(
    name="end_call", description="End the call, once the user has said goodbye or the conversation is over.",
    properties={"reason": {"type": "string", "description": "Why the call ends, in a few words"}}, required=[])


@dataclass(frozen=True)
class Behaviour:
    """An assistant's conversation behaviour (the job's `behaviour`, in the API's names)."""

    first_message: str = ""
    first_message_mode: str = SPEAKS_FIRST
    silence_timeout: float = 0
    silence_prompt: str = "Are you still there?"
    end_call_phrases: tuple[str, ...] = ()
    end_call_message: str = ""
    end_call_tool: bool = False
    duration_warning_seconds: float = 0
    duration_warning: str = ""
    interruption_min_words: int = 0  # 0: the user interrupts as soon as the VAD hears them
    interruption_min_seconds: float = 0  # the same in seconds of speech
    notes_tools: bool = True  # the built-in notes tools
    record_calls: bool = False  # keep the call's audio (recording.py)

    @classmethod
    def from_job(cls, data: dict[str, Any]) -> "Behaviour":
        return cls(first_message=str(data.get("firstMessage") or ""),
                   first_message_mode=str(data.get("firstMessageMode") or SPEAKS_FIRST),
                   silence_timeout=float(data.get("silenceTimeout") or 0),
                   silence_prompt=str(data.get("silencePrompt") or cls.silence_prompt),
                   end_call_phrases=tuple(str(p) for p in data.get("endCallPhrases") or ()),
                   end_call_message=str(data.get("endCallMessage") or ""),
                   end_call_tool=bool(data.get("endCallTool")),
                   duration_warning_seconds=float(data.get("durationWarningSeconds") or 0),
                   duration_warning=str(data.get("durationWarning") or ""),
                   interruption_min_words=int(data.get("interruptionMinWords") or 0),
                   interruption_min_seconds=float(data.get("interruptionMinSeconds") or 0),
                   notes_tools=bool(data.get("notesTools", True)),
                   record_calls=bool(data.get("recordCalls")))

    @property
    def greets(self) -> bool:
        return bool(self.first_message) and self.first_message_mode == SPEAKS_FIRST


def says_end_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """The end-call phrase `text` contains as whole words (case and punctuation aside), if any."""
    words = " ".join(re.findall(r"[a-z0-9']+", text.lower()))
    for phrase in phrases:
        wanted = " ".join(re.findall(r"[a-z0-9']+", phrase.lower()))
        if wanted and re.search(rf"(?<![a-z0-9']){re.escape(wanted)}(?![a-z0-9'])", words):
            return phrase
    return None


class BotHooks(Protocol):
    """What the monitor needs of the BotSession."""

    paused: bool

    async def say(self, text: str, kind: str) -> None: ...

    async def end(self, reason: str) -> None: ...


class CallMonitor(BaseObserver):
    """Watches one connection's pipeline and acts on the assistant's behaviour settings."""

    def __init__(self, behaviour: Behaviour, hooks: BotHooks, *, ends_at: dt.datetime | None = None) -> None:
        super().__init__(observe_every_push=False)
        self.behaviour, self.hooks, self.ends_at = behaviour, hooks, ends_at
        self.prompted = False  # the silence prompt was said, and the user has not spoken since
        self.ending: str | None = None  # the session ends with this reason once the bot stops speaking
        self.bot_speaking = False
        self.answering = False  # an answer (or a line said) is on its way to the speaker
        self._said_goodbye = False
        self._answer: list[str] = []
        self._timers: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, *, greet: bool) -> None:
        """The user is connected: say the first message (if `greet`), start the clocks."""
        if greet and self.behaviour.greets:
            await self.hooks.say(self.behaviour.first_message, "firstMessage")
        else:
            self._listen_for_silence()
        if self.ends_at is not None and self.behaviour.duration_warning_seconds and self.behaviour.duration_warning:
            warn_at = self.ends_at - dt.timedelta(seconds=self.behaviour.duration_warning_seconds)
            self._later("duration", max(0.0, (warn_at - _now()).total_seconds()), self._warn_duration)

    def stop(self) -> None:
        for task in self._timers.values():
            task.cancel()
        self._timers.clear()

    async def end_call(self, reason: str, *, answer_coming: bool = False) -> None:
        """End the session once the bot has finished speaking and said the end message (if any).

        `answer_coming`: the model is about to speak (it answers the end_call tool's result),
        so the goodbye waits for that answer. A goodbye that never plays (its speech failed)
        still ends the session, after END_FALLBACK_SECONDS.
        """
        if self.ending is not None:
            return
        self.ending = reason
        self.answering = self.answering or answer_coming
        self._cancel("silence")
        logger.info("[VoiceSession] ending the call: %s", reason)
        self._later("end", END_FALLBACK_SECONDS, self._finish)
        if not (self.bot_speaking or self.answering):
            await self._goodbye()

    async def _goodbye(self) -> None:
        """The bot is quiet and the call is ending: the end message, then (when it has played) the end."""
        if self.behaviour.end_call_message and not self._said_goodbye:
            self._said_goodbye = True
            self.answering = True
            await self.hooks.say(self.behaviour.end_call_message, "endCallMessage")
            return
        await self._finish()

    # -- frames -------------------------------------------------------------------------
    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, (UserStartedSpeakingFrame, LLMMessagesAppendFrame)):
            self.prompted = False
            self._cancel("silence")
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._listen_for_silence()
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._answer = []
            self.answering = True
            self._cancel("silence")  # the bot is thinking: not the user's silence
        elif isinstance(frame, LLMTextFrame):
            self._answer.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            phrase = says_end_phrase("".join(self._answer), self.behaviour.end_call_phrases)
            if phrase is not None:
                await self.end_call("end_call_phrase")
        elif isinstance(frame, BotStartedSpeakingFrame):
            self.bot_speaking = True
            self._cancel("silence")
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_speaking = self.answering = False
            if self.ending is not None:
                await self._goodbye()
            else:
                self._listen_for_silence()

    # -- the clocks ---------------------------------------------------------------------
    def _listen_for_silence(self) -> None:
        if self.behaviour.silence_timeout > 0 and self.ending is None:
            self._later("silence", self.behaviour.silence_timeout, self._silence)

    async def _silence(self) -> None:
        if self.hooks.paused or self.bot_speaking:
            return
        if self.prompted:
            await self.end_call("silence_timeout")
            return
        self.prompted = True
        await self.hooks.say(self.behaviour.silence_prompt, "silencePrompt")

    async def _warn_duration(self) -> None:
        await self.hooks.say(self.behaviour.duration_warning, "durationWarning")

    async def _finish(self) -> None:
        self._cancel("end")
        reason, self.ending = self.ending, "done"
        if reason and reason != "done":
            await self.hooks.end(reason)

    def _later(self, name: str, seconds: float, then: Callable[[], Awaitable[None]]) -> None:
        self._cancel(name)

        async def run() -> None:
            await asyncio.sleep(seconds)
            self._timers.pop(name, None)
            await then()

        self._timers[name] = asyncio.get_running_loop().create_task(run(), name=f"behaviour-{name}")

    def _cancel(self, name: str) -> None:
        task = self._timers.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()


def register_end_call_tool(llm: LLMService, monitor: Callable[[], CallMonitor | None]) -> None:
    """The end_call tool: the model ends the call (after what it says next, and the end message)."""

    async def run(params: FunctionCallParams) -> None:
        reason = str((params.arguments or {}).get("reason") or "")
        await params.result_callback({"ok": True, "ending": True, "reason": reason})
        current = monitor()
        if current is not None:
            await current.end_call("end_call_tool", answer_coming=True)

    llm.register_function("end_call", run, cancel_on_interruption=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
