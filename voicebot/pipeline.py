"""The per-session Pipecat pipeline: transport in -> VAD/turns -> STT -> LLM (+ tools) -> TTS -> transport out."""
from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from .forwarder import EventForwarder
from .observers import SessionObserver
from .prefill import UserWordsPrefill
from .sharedmodels import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer
from .behaviour import Behaviour, CallMonitor, register_end_call_tool
from . import custom_tools
from .tools import register_notes_tools
from .turnend import turn_stop_strategy


class PipelineOwner(Protocol):
    """What the pipeline needs of its bot (BotSession, which builds it: no import back)."""

    bundle: Any
    spec: Any
    context: Any
    custom_tools: list[Any]
    recording: Any  # recording.CallRecording, or None
    paused: bool
    worker: Any  # session.HostWorker: its worker_id fences the events
    llm_slot: int | None  # the local llama.cpp slot its requests name (None: any)

    def system_prompt(self) -> str: ...

    async def say(self, text: str, kind: str, *, remember: bool = True) -> None: ...

    async def end(self, reason: str) -> None: ...


class PauseGate(FrameProcessor):
    """Drops the user's audio while the session is paused (mic muted, connection kept)."""

    def __init__(self, bot: PipelineOwner) -> None:
        super().__init__(name="PauseGate")
        self.bot = bot

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if self.bot.paused and isinstance(frame, InputAudioRawFrame):
            return
        await self.push_frame(frame, direction)


class UserAudioEnd(FrameProcessor):
    """Where the user's audio stops, right after the user aggregator (its VAD and turn model).

    Pipecat passes each 20 ms of the user's audio on through every processor that follows
    (the LLM, the TTS, the output transport, the assistant aggregator), none of which reads
    it: each pass is a queue hop and a call of every observer, 50 times a second a session
    (issue 14, docs/benchmarks.md). Left out of the pipeline when the call is recorded: the
    recorder, after the output transport, takes both sides.
    """

    def __init__(self) -> None:
        super().__init__(name="UserAudioEnd")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)


def build_pipeline(bot: PipelineOwner, transport: Any) -> tuple[PipelineWorker, EventForwarder, CallMonitor]:
    """Assemble the pipeline for one connection of a bot session.

    The LLM context lives on the BotSession, so a user who reconnects inside
    the persistence window continues the same conversation.
    """
    bundle = bot.bundle
    spec = bot.spec
    stt = bundle.make_stt(language=spec.language, name=spec.persona)
    llm = bundle.make_llm(system_prompt=bot.system_prompt(), slot=bot.llm_slot)
    tts = bundle.make_tts(voice=spec.voice, parameters=spec.voice_parameters)
    behaviour = Behaviour.from_job(spec.behaviour)
    if behaviour.notes_tools:
        register_notes_tools(llm, user_id=int(spec.user_id), session_id=spec.session_id)
    if bot.custom_tools:
        # A tool's messages are not put in the conversation: the model would take "One moment." for an
        # answer of its own, to follow or to repeat. A failure reaches it as the tool's result.
        custom_tools.register(llm, bot.custom_tools, http=bundle.http("tools"), context={
            "sessionId": spec.session_id, "userId": spec.user_id, "assistant": spec.assistant},
            announce=lambda text, kind: bot.say(text, kind, remember=False))
        llm.custom_tools = [tool.schema for tool in bot.custom_tools]  # routed for a model that makes no calls
    monitor = CallMonitor(behaviour, bot, ends_at=_when(spec.ends_at))
    if behaviour.end_call_tool:
        register_end_call_tool(llm, lambda: monitor)

    # The worker's one VAD and turn model, each connection with only its own state (sharedmodels.py).
    vad = SharedSileroVADAnalyzer(params=VADParams(stop_secs=settings.VOICE_VAD_STOP_SECS,
                                                   min_volume=settings.VOICE_VAD_MIN_VOLUME),
                                  silence_gate=settings.VOICE_VAD_SILENCE_GATE)
    # Pipecat's smart-turn model decides when the user is done; when it judges a
    # turn unfinished it waits for more speech, by default 3 s. Capped here:
    # a short spoken question judged "incomplete" should not cost seconds.
    # A question Whisper heard ends the turn even when the model judged it unfinished (turnend.py).
    turn_stop = turn_stop_strategy(turn_analyzer=SharedSmartTurnAnalyzer(
        params=SmartTurnParams(stop_secs=settings.VOICE_TURN_INCOMPLETE_WAIT_SECS)))
    # Pipecat ends a user turn whose transcript has not come 5 s after the speech, and runs the
    # LLM on an "I didn't catch that" prompt; the late transcript then starts a turn of its own
    # that interrupts that answer. Our Whisper's final can take longer on a busy 2-core machine
    # (8 s for a first turn in the conversation bench), so the turn waits longer for it.
    user_agg, assistant_agg = LLMContextAggregatorPair(
        bot.context, user_params=LLMUserAggregatorParams(
            vad_analyzer=vad, user_turn_strategies=turn_strategies(behaviour, turn_stop),
            user_turn_stop_timeout=settings.VOICE_USER_TURN_TIMEOUT))
    forwarder = EventForwarder(spec.session_id, worker_id=bot.worker.worker_id)
    # The local LLM reads the user's words while they speak (prefill.py); a hosted one is not asked.
    prefill = ([UserWordsPrefill(llm, bot.context, gone_quiet=getattr(stt, "gone_quiet", None))]
               if settings.VOICE_LLM_PREFILL and getattr(llm, "local", False) else [])
    pipeline = Pipeline([
        transport.input(),
        PauseGate(bot),
        stt,
        *prefill,
        user_agg,
        *([UserAudioEnd()] if bot.recording is None else []),
        llm,
        tts,
        transport.output(),
        *([bot.recording.processor()] if bot.recording is not None else []),  # both sides, as played
        assistant_agg,
    ])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=bundle.tts_sample_rate,
                              enable_metrics=True),
        # Behind one observer, and without Pipecat's turn tracking (nothing here reads it): each
        # observer is woken for every frame every processor handles (observers.py).
        observers=[SessionObserver([forwarder, monitor])],
        enable_turn_tracking=False,
        enable_rtvi=False,  # the browser gets our voice.* events over the websocket instead
        idle_timeout_secs=None,  # teardown follows the session's stored deadlines
    )
    return worker, forwarder, monitor


def turn_strategies(behaviour: Behaviour, turn_stop: Any) -> UserTurnStrategies:
    """When a user turn starts and stops. With the assistant's interruption words (or seconds) set,
    the user takes the turn from a speaking bot only once they have said that many words (Pipecat's
    MinWordsUserTurnStartStrategy) or spoken that long (interruptions.py), whichever comes first;
    at once when the bot is quiet."""
    start: list[Any] = []
    if behaviour.interruption_min_words > 0:
        from pipecat.turns.user_start.min_words_user_turn_start_strategy import MinWordsUserTurnStartStrategy

        start.append(MinWordsUserTurnStartStrategy(min_words=behaviour.interruption_min_words))
    if behaviour.interruption_min_seconds > 0:
        from .interruptions import MinSecondsUserTurnStartStrategy

        start.append(MinSecondsUserTurnStartStrategy(min_seconds=behaviour.interruption_min_seconds))
    return UserTurnStrategies(start=start, stop=[turn_stop]) if start else UserTurnStrategies(stop=[turn_stop])


def _when(iso: str) -> Any:
    """A job's ISO 8601 time as an aware datetime, or None."""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None
