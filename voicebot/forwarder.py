"""The app-message forwarder: pipeline frames become `voice.*` events.

A Pipecat observer (it sees frames without sitting in the pipeline's path)
turns speech, transcript, bot-speaking, tool, audio-level and error frames
into events. Writing them to the database happens in a background task fed
by a queue, so a slow disk never stalls the audio.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import numpy as np
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from pipecat.frames.frames import (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, ErrorFrame,
                                   FunctionCallInProgressFrame, FunctionCallResultFrame, InputAudioRawFrame,
                                   InterimTranscriptionFrame, InterruptionFrame, LLMFullResponseEndFrame,
                                   LLMFullResponseStartFrame, LLMMessagesAppendFrame, LLMTextFrame, TranscriptionFrame,
                                   TTSAudioRawFrame,
                                   UserStartedSpeakingFrame, UserStoppedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voicesessions import opsevents, workers
from voicesessions.events import record_events
from voicesessions.models import ErrorKind, VoiceSession
from voicesessions.models import VoiceEventType as E

from .provider_errors import ProviderError, describe, redact

logger = logging.getLogger("voicebot.forwarder")

LEVEL_PERIOD = 0.25  # seconds between audio-level events per source
LEVEL_DELTA = 0.05  # ...and only when the level moved this much
RETRY_SECONDS = 0.5  # between attempts to store events while the database is out of reach


def audio_level(pcm: bytes) -> float:
    """RMS of 16-bit PCM on a 0..1 scale (speech peaks near 0.3)."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    if samples.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) / 32768.0
    return round(min(1.0, rms * 3.0), 3)


class TurnTimer:
    """Times one user turn, end of speech -> first bot audio, split by stage (for the events and the bench)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.vad_stop: float | None = None
        self.user_stop: float | None = None
        self.transcript: float | None = None
        self.llm_first: float | None = None
        self.tts_first: float | None = None

    def report(self, bot_started: float) -> dict[str, float] | None:
        if self.vad_stop is None:
            return None
        ms = lambda a, b: round((b - a) * 1000, 1) if a is not None and b is not None else None  # noqa: E731
        return {"turnEndMs": ms(self.vad_stop, self.user_stop), "sttMs": ms(self.vad_stop, self.transcript),
                "llmFirstTokenMs": ms(self.user_stop or self.transcript, self.llm_first),
                "ttsFirstAudioMs": ms(self.llm_first, self.tts_first),
                "totalMs": ms(self.vad_stop, bot_started)}


class EventForwarder(BaseObserver):
    """Observer that records the session's events (stored, then pushed to the browser)."""

    def __init__(self, session_id: str, worker_id: str | None = None) -> None:
        super().__init__(observe_every_push=False)
        self.session_id = session_id
        self.worker_id = worker_id  # events are stored only while this worker's registration stands
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.bot_text: list[str] = []
        self.levels: dict[str, tuple[float, float]] = {}  # source -> (measured at, level last sent)
        self.timer = TurnTimer()
        self.turns: list[dict[str, float]] = []
        self._writer: asyncio.Task | None = None
        self._session: VoiceSession | None = None
        # Called once a stage can no longer work (its credentials refused, say): set by the session.
        self.on_fatal: Callable[[ProviderError], Awaitable[None]] | None = None
        self._fatal_told = False
        self._told: set[str] = set()  # error codes told the user since their latest turn began
        # A tool's start or delayed message is being said ("One moment."): the turn's answer comes after
        # it, and its time from the end of the user's speech is reported too (`answerMs`, see holding_on).
        self._holding = False
        self._answer_from: float | None = None

    async def _error(self, frame: ErrorFrame) -> None:
        """A failure, told to the user in our words; the provider's own text goes to the log only."""
        error = describe(frame)
        logger.warning("[VoiceSession] session=%s %s failed (%s): %s", self.session_id, error.stage, error.code,
                       redact(str(frame.error)))
        if error.fatal and self.on_fatal is not None:
            if not self._fatal_told:  # a stage that cannot work keeps failing until the pipeline ends
                self._fatal_told = True
                await self.on_fatal(error)  # the session ends, and says why
            return
        # One failure can raise several frames (Cartesia answers each sentence of a failed
        # answer with an error, and Pipecat then reports the context that got no audio):
        # the user hears of it once a turn.
        if error.code in self._told:
            return
        self._told.add(error.code)
        self.emit(E.ERROR, error.payload())

    def holding_on(self) -> None:
        """A tool's start or delayed message is about to be said: the bot's next start of speech is that
        message, and the turn's answer comes later, timed from the same end of speech (`answerMs`)."""
        self._holding = True

    # --- event production (on the pipeline's loop, never blocking) ----------
    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.queue.put_nowait((event_type, payload))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        # Broadcast frames travel both ways; report the downstream copy only.
        # Errors travel upstream only.
        if isinstance(frame, ErrorFrame):
            await self._error(frame)
            return
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        now = time.monotonic()
        if isinstance(frame, InputAudioRawFrame):
            self._level("user", frame.audio, now)
        elif isinstance(frame, TTSAudioRawFrame):
            if self.timer.tts_first is None:
                self.timer.tts_first = now
            self._level("bot", frame.audio, now)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self.timer.reset()
            self._holding, self._answer_from = False, None  # a new turn: the last one's answer is not timed
            self.timer.vad_stop = now
        elif isinstance(frame, LLMMessagesAppendFrame):  # a typed turn
            self._told.clear()
            self._answer_from = None
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._told.clear()
            self._holding, self._answer_from = False, None
            self.emit(E.SPEECH_START, {"role": "user"})
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self.timer.user_stop = now
            self.emit(E.SPEECH_END, {"role": "user"})
        elif isinstance(frame, InterimTranscriptionFrame):
            self.emit(E.TRANSCRIPT, {"role": "user", "text": frame.text, "final": False})
        elif isinstance(frame, TranscriptionFrame):
            self._told.clear()
            self.timer.transcript = self.timer.transcript or now
            self.emit(E.TRANSCRIPT, {"role": "user", "text": frame.text, "final": True})
        elif isinstance(frame, LLMFullResponseStartFrame):
            self.bot_text = []
        elif isinstance(frame, LLMTextFrame):
            if self.timer.llm_first is None:
                self.timer.llm_first = now
            self.bot_text.append(frame.text)
            if frame.text.rstrip().endswith((".", "?", "!", ",")):  # interim bot transcript per phrase
                self.emit(E.TRANSCRIPT, {"role": "assistant", "text": "".join(self.bot_text).strip(), "final": False})
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._final_bot_text(interrupted=False)
        elif isinstance(frame, InterruptionFrame):
            self._final_bot_text(interrupted=True)
        elif isinstance(frame, BotStartedSpeakingFrame):
            latency = self.timer.report(now)
            if latency:
                self.turns.append(latency)
                if self._holding:  # a tool's start message: the answer is still to come
                    self._answer_from = self.timer.vad_stop
            elif self._answer_from is not None and not self._holding:
                latency = {"answerMs": round((now - self._answer_from) * 1000, 1)}
                self._answer_from = None
            self._holding = False
            self.emit(E.BOT_SPEAKING, {"speaking": True, "latency": latency})
            self.timer.reset()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.emit(E.BOT_SPEAKING, {"speaking": False})
        elif isinstance(frame, FunctionCallInProgressFrame):
            self.emit(E.TOOL_CALL, {"name": frame.function_name, "toolCallId": frame.tool_call_id,
                                    "arguments": _jsonable(frame.arguments)})
        elif isinstance(frame, FunctionCallResultFrame):
            self.emit(E.TOOL_RESULT, {"name": frame.function_name, "toolCallId": frame.tool_call_id,
                                      "result": _jsonable(frame.result)})

    def _final_bot_text(self, *, interrupted: bool) -> None:
        text = "".join(self.bot_text).strip()
        self.bot_text = []
        if text:
            self.emit(E.TRANSCRIPT, {"role": "assistant", "text": text, "final": True, "interrupted": interrupted})

    def _level(self, source: str, pcm: bytes, now: float) -> None:
        """An audio-level event at most every LEVEL_PERIOD per source, when the level moved LEVEL_DELTA
        from the last one sent. Measured only that often too: a steady level (a quiet room, most of
        a call) used to be measured on every frame once the period had passed."""
        measured_at, sent = self.levels.get(source, (0.0, -1.0))
        if now - measured_at < LEVEL_PERIOD:
            return
        level = audio_level(pcm)
        if abs(level - sent) >= LEVEL_DELTA:
            sent = level
            self.emit(E.AUDIO_LEVEL, {"source": source, "level": level})
        self.levels[source] = (now, sent)

    # --- event storage (off the audio path) ----------------------------------
    async def _drain(self) -> None:
        held: list[tuple[str, dict[str, Any]]] = []  # a batch the database could not take yet
        out_of_reach_since: float | None = None
        while held or not self.queue.empty():
            batch, held = held, []
            while not self.queue.empty() and len(batch) < 50:
                batch.append(self.queue.get_nowait())
            try:
                await self._store(batch)
                if out_of_reach_since is not None:
                    logger.info("[VoiceSession] session=%s database back after %.1fs: held events stored",
                                self.session_id, time.monotonic() - out_of_reach_since)
                out_of_reach_since = None
            except (OperationalError, InterfaceError) as exc:
                # The database is out of reach (a cut link, a restart, a failover). The batch waits,
                # in order, and is stored once it is back. Past the worker's lease the cluster has
                # declared this worker lost and failed the session (voicebot/worker.py): its events
                # would be refused by the fence anyway, so they are let go.
                now = time.monotonic()
                if out_of_reach_since is None:
                    out_of_reach_since = now
                    logger.warning("[VoiceSession] session=%s database out of reach (%s): holding events",
                                   self.session_id, type(exc).__name__)
                if now - out_of_reach_since > settings.VOICE_WORKER_DEAD_AFTER:
                    logger.error("[VoiceSession] session=%s %d event(s) not stored: the database was out of "
                                 "reach past the dead-worker window", self.session_id,
                                 len(batch) + self.queue.qsize())
                    while not self.queue.empty():
                        self.queue.get_nowait()
                    return
                held = batch
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # a batch the database refuses (a bug): logged, not retried for ever
                logger.exception("[VoiceSession] could not store %d event(s) for session %s", len(batch),
                                 self.session_id)

    @database_sync_to_async
    def _store(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if self._session is None:  # read once: what an event row needs of it (user, room url) never changes
            self._session = VoiceSession.objects.select_related("room").get(pk=self.session_id)
        session = self._session
        with transaction.atomic():
            # Fencing: a worker the cluster declared lost (cut off from the database) has had its
            # sessions failed and their users told; what it still had queued must not land in
            # them when its link comes back. The check shares the inserts' transaction.
            if self.worker_id and not workers.is_live(self.worker_id):
                logger.warning("[VoiceSession] session=%s %d event(s) not stored: worker %s was declared lost",
                               self.session_id, len(batch), self.worker_id)
                return
            record_events(session, batch)
            for event_type, payload in batch:
                if event_type == E.ERROR:
                    opsevents.record_error(ErrorKind.PIPELINE, detail=str(payload.get("code") or payload.get("message", ""))[:200],
                                           user=session.user_id, session=session)

    def discard(self) -> None:
        """Forget what is queued and stop writing (the worker lost this session: fencing)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        if self._writer is not None:
            self._writer.cancel()

    async def flush(self) -> None:
        """Wait until every queued event is stored (at session end)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})  # a discarded (cancelled) writer ends the wait too


def _jsonable(value: Any) -> Any:
    """Tool arguments and results as plain JSON (they may hold pydantic or other objects)."""
    import json

    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)
