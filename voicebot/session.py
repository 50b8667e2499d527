"""One bot session inside a worker: its conversation, its peer connection(s), its pipeline."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import LLMMessagesAppendFrame, TTSSpeakFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from voicesessions import sessions as session_service
from voicesessions.logctx import log_fields
from voicesessions.models import ErrorKind, VoiceEventType
from voicesessions.queue import BotJobSpec

from . import avatar
from .behaviour import END_CALL, Behaviour
from .control import ConnectionInUse
from .pipeline import build_pipeline
from .provider_errors import ProviderError
from .recording import CallRecording
from .services.llm import compose_prompt
from .tools import TOOLS

if TYPE_CHECKING:
    from .custom_tools import HttpTool
    from .services import ModelBundle


class HostWorker(Protocol):
    """What a bot needs of the worker that runs it (BotWorkerProcess, which imports this module)."""

    worker_id: str
    ice_servers: list[Any]

logger = logging.getLogger("voicebot.session")



class DailyJoinError(Exception):
    """The bot could not join its Daily room; the message is Daily's reason."""


def assistant_prompts(limit: int) -> list[str]:
    """The system prompts this worker's sessions will most likely start with (blocking ORM).

    Each voice-enabled assistant's, named by its own persona as a join names it by
    default, most recently edited first. Read into llama.cpp's cache at worker start,
    a session's first answer then finds its prompt there: read when the job is
    claimed instead, a 200-token prompt took 6-10 s on a busy 2-core machine, and the
    user's first question waited behind it.
    """
    from assistants.models import AssistantRecord

    rows = (AssistantRecord.objects.filter(voice_enabled=True).order_by("-updated_at")
            .values_list("system_prompt", "persona")[:limit])
    return list(dict.fromkeys(compose_prompt(prompt, persona) for prompt, persona in rows))


def tool_check_prompts(limit: int) -> list[str]:
    """The prompts of the voice assistants' custom-tool checks (blocking ORM), most recently edited first.

    The offline model checks each tool past the router's gate with that tool's own prompt
    (tool_router.check_prompt, ~100-170 tokens); read at a tool's first check, it took
    1.4-2.4 s on a 2-core machine before the check's 0.1 s, so the first request for each tool
    was the slow one. The worker reads them at start, as many as the slots its conversations leave,
    and the others, with those added later, once it is idle (worker._read_new_prompts); a tool has
    no edit time of its own, so within an assistant the newest comes first.
    """
    from assistants.models import AssistantTool

    from .services.tool_router import check_prompt

    rows = (AssistantTool.objects.filter(enabled=True, assistant__voice_enabled=True)
            .order_by("-assistant__updated_at", "-pk").values_list("name", "description", "parameters")[:limit])
    return list(dict.fromkeys(check_prompt(name, description or "", (parameters or {}).get("properties") or {})
                              for name, description, parameters in rows))


def _log_prime_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("[BotJoin] could not prime the LLM with the session's prompt: %s", task.exception())


class BotSession:
    """The bot of one VoiceSession. It outlives a single peer connection: the user may
    leave and come back inside the persistence window and keep the conversation."""

    def __init__(self, worker: HostWorker, spec: BotJobSpec, bundle: "ModelBundle",
                 custom_tools: "list[HttpTool] | None" = None) -> None:
        self.worker = worker
        self.spec = spec
        self.bundle = bundle
        self.session_id = spec.session_id
        self.custom_tools = custom_tools or []
        behaviour = Behaviour.from_job(spec.behaviour)
        self.recording = CallRecording(spec.session_id) if behaviour.record_calls else None
        tools = [*(TOOLS.standard_tools if behaviour.notes_tools else []), *([END_CALL] if behaviour.end_call_tool
                                                                             else []),
                 *(tool.schema for tool in self.custom_tools)]
        # No tools at all: none in the request (OpenAI refuses an empty list).
        self.context = LLMContext(messages=[], tools=ToolsSchema(standard_tools=tools)) if tools else LLMContext()
        self.greeted = False  # the first message is said once a session, not again on a reconnect
        self.paused = False
        self.connection: Any = None
        self.pipeline_worker: Any = None
        self.forwarder: Any = None
        self.monitor: Any = None  # behaviour.CallMonitor of the live pipeline
        self.runner_task: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.fenced = False  # the worker was declared lost: this bot writes nothing more (drop)
        # The local llama.cpp slot this session's answers and reads all use (SlotPool, only a local
        # server has one); lent back at close.
        self.llm_slot: int | None = bundle.llm_slots.acquire() if bundle.llm_slots is not None else None

    def prime(self) -> None:
        """Start reading this session's system prompt into the local LLM's cache while the
        user's audio connects, so their first question is answered as fast as the rest."""
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.bundle.prime_llm, self.system_prompt(),
                                                                        self.llm_slot))
        task.add_done_callback(_log_prime_failure)

    def system_prompt(self) -> str:
        return compose_prompt(self.spec.system_prompt, self.spec.persona)

    # --- transports ------------------------------------------------------------
    async def start_daily(self, token: str) -> None:
        """Production: join the Daily room as a participant; return once the bot is in it.

        The bot stays in the room for the whole session: when the user leaves it
        waits there through the persistence window and answers the user's return
        (a reload's new participant included). Raises DailyJoinError when Daily
        refuses the join (bad or expired token, full or missing room) or does not
        answer within VOICE_DAILY_JOIN_TIMEOUT, so the job is never acknowledged
        for a bot that is not in the room.
        """
        from pipecat.transports.daily.transport import DailyParams, DailyTransport

        # voiceOnly: false publishes a camera with a still avatar (Pipecat publishes one only
        # when both camera_out and video_out are on).
        camera = not self.spec.voice_only
        params = DailyParams(audio_in_enabled=True, audio_out_enabled=True, camera_out_enabled=camera,
                             video_out_enabled=camera, video_out_width=avatar.SIZE, video_out_height=avatar.SIZE,
                             video_out_framerate=avatar.FRAMERATE)
        transport = DailyTransport(self.spec.room_url, token, self.spec.persona or "Assistant", params=params)
        joined: asyncio.Future = asyncio.get_running_loop().create_future()
        present: set[str] = set()  # the user's participants in the room (two, briefly, during a reload)

        @transport.event_handler("on_joined")
        async def _in_room(_t: Any, _data: Any) -> None:
            if not joined.done():
                joined.set_result(True)

        @transport.event_handler("on_error")
        async def _error(_t: Any, message: Any) -> None:
            if not joined.done():
                joined.set_exception(DailyJoinError(str(message)))

        @transport.event_handler("on_participant_joined")
        async def _user_joined(_t: Any, participant: Any) -> None:
            present.add(participant["id"])
            await self._connected()

        @transport.event_handler("on_participant_left")
        async def _user_left(_t: Any, participant: Any, _reason: Any) -> None:
            present.discard(participant["id"])
            if not present:  # not a reload's old participant leaving after the new one came
                await self._user_left(stop_pipeline=False)

        @transport.event_handler("on_call_state_updated")
        async def _call_state(_t: Any, state: str) -> None:
            if state == "left" and joined.done() and not self.closed.is_set():
                await self._lost("daily_disconnected", "The assistant was disconnected from the Daily room.")

        await self._run(transport)
        try:
            await asyncio.wait_for(asyncio.shield(joined), timeout=settings.VOICE_DAILY_JOIN_TIMEOUT)
        except asyncio.TimeoutError:
            raise DailyJoinError(f"Daily did not answer the join within {settings.VOICE_DAILY_JOIN_TIMEOUT:g} s")
        if camera:
            await self.pipeline_worker.queue_frames([avatar.avatar_frame(self.spec.persona or "Assistant")])

    async def handle_offer(self, sdp: str, sdp_type: str, pc_id: str | None, restart_pc: bool,
                           owner: bool = True) -> dict[str, Any]:
        """Embedded default: answer the browser's WebRTC offer (relayed by the server).

        A new peer replaces a live one (a page reload) only when the server
        vouched that the room's signed-in owner sent it (ConnectionInUse
        otherwise). The new connection is set up before the old one is
        stopped, so an offer that fails leaves the live call alone.
        """
        from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
        from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

        from . import mediapath

        # Issue 14: the cheaper media path (20 ms frames, Opus packets, loop decoding, longer input frames).
        mediapath.install(input_frame_ms=settings.VOICE_INPUT_FRAME_MS, opus_complexity=settings.VOICE_OPUS_COMPLEXITY)

        if pc_id and self.connection is not None and self.connection.pc_id == pc_id:
            await self.connection.renegotiate(sdp=sdp, type=sdp_type, restart_pc=restart_pc)
            return self.connection.get_answer()
        if self.runner_task is not None and not owner:
            raise ConnectionInUse(self.session_id)
        connection = SmallWebRTCConnection(ice_servers=self.worker.ice_servers)
        await connection.initialize(sdp=sdp, type=sdp_type)
        if self.runner_task is not None:  # a new peer replaces the old one (page reload)
            await self._stop_pipeline("replaced by a new connection")
        self.connection = connection
        transport = SmallWebRTCTransport(webrtc_connection=connection,
                                         params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))

        @transport.event_handler("on_client_connected")
        async def _connected(_t: Any, _c: Any) -> None:
            await self._connected()

        @transport.event_handler("on_client_disconnected")
        async def _disconnected(_t: Any, _c: Any) -> None:
            # A replaced connection reports its end after the new one took over:
            # that is not the user leaving, and must not stop the new pipeline.
            if connection is self.connection:
                await self._user_left(stop_pipeline=True)

        await self._run(transport)
        return connection.get_answer()

    async def add_ice_candidates(self, pc_id: str, candidates: list[dict[str, Any]]) -> None:
        from aiortc.sdp import candidate_from_sdp

        if self.connection is None or self.connection.pc_id != pc_id:
            raise LookupError("no such peer connection")
        for item in candidates:
            candidate = None
            if item.get("candidate"):
                candidate = candidate_from_sdp(item["candidate"])
                candidate.sdpMid = item.get("sdp_mid")
                candidate.sdpMLineIndex = item.get("sdp_mline_index")
            await self.connection.add_ice_candidate(candidate)

    async def _run(self, transport: Any) -> None:
        self.pipeline_worker, self.forwarder, self.monitor = build_pipeline(self, transport)
        self.forwarder.on_fatal = self._provider_failed
        runner = WorkerRunner(handle_sigint=False)  # one runner per session: ending it ends only this one
        await runner.add_workers(self.pipeline_worker)
        self.runner_task = asyncio.get_running_loop().create_task(runner.run(), name=f"bot-{self.session_id}")

    async def _stop_pipeline(self, reason: str) -> None:
        task, worker, forwarder = self.runner_task, self.pipeline_worker, self.forwarder
        self.runner_task = self.pipeline_worker = None
        if self.monitor is not None:
            self.monitor.stop()  # its clocks belong to this connection
            self.monitor = None
        if worker is not None:
            await worker.cancel(reason=reason)
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        if forwarder is not None:
            await forwarder.flush()
        if self.connection is not None:
            try:
                await self.connection.disconnect()
            except Exception:  # already closed by the peer
                pass
            self.connection = None

    # --- lifecycle reports -----------------------------------------------------
    async def _connected(self) -> None:
        logger.info("[BotJoin] session=%s user media connected", self.session_id,
                    extra=log_fields(session_id=self.session_id, user_id=self.spec.user_id,
                                     room_url=self.spec.room_url))
        await database_sync_to_async(session_service.mark_bot_connected)(self.session_id, self.worker.worker_id)
        if self.monitor is not None:
            greet, self.greeted = not self.greeted, True
            await self.monitor.start(greet=greet)

    # --- what the assistant does on its own (behaviour.CallMonitor) ------------
    async def say(self, text: str, kind: str, *, remember: bool = True) -> None:
        """Speak `text` (a first message, a silence prompt, a tool's start message...): on the page as the
        assistant's words (`kind` says which line it is), and into the conversation if `remember`."""
        if self.pipeline_worker is None or self.forwarder is None:
            return
        self.forwarder.emit(VoiceEventType.TRANSCRIPT, {"role": "assistant", "text": text, "final": True,
                                                        "kind": kind})
        if kind in ("startMessage", "delayedMessage"):  # said while the answer is still to come
            self.forwarder.holding_on()
        await self.pipeline_worker.queue_frames([TTSSpeakFrame(text, append_to_context=remember)])

    async def end(self, reason: str) -> None:
        """The assistant ends the conversation: the session ends with `reason`, and the bot leaves."""
        await database_sync_to_async(session_service.end_by_bot)(self.session_id, reason)
        asyncio.get_running_loop().create_task(self.close(reason))

    async def _user_left(self, *, stop_pipeline: bool) -> None:
        """The user went away: the session waits out the persistence window for a return.

        A WebRTC peer connection is gone for good, so its pipeline stops (a new
        offer starts another); in a Daily room the bot stays and listens.
        """
        if self.fenced:
            return
        window = await database_sync_to_async(session_service.peer_left)(self.session_id)
        logger.info("[VoiceSession] session=%s user left; waiting %ss for a return", self.session_id, window)
        if stop_pipeline:
            asyncio.get_running_loop().create_task(self._stop_pipeline("peer left"))

    async def _lost(self, code: str, message: str) -> None:
        """The bot lost its room under a live session (ejected, meeting ended): tell the user."""
        logger.warning("[BotJoin] session=%s %s", self.session_id, code)
        await database_sync_to_async(session_service.mark_unavailable)(self.session_id, code, message)
        asyncio.get_running_loop().create_task(self.close(code))

    async def _provider_failed(self, error: ProviderError) -> None:
        """A stage can no longer work (its provider refused the credentials, say): end the
        session cleanly and tell the user which stage failed, instead of a bot that hears
        the user and never answers."""
        logger.error("[VoiceSession] session=%s ending: the %s stage cannot work (%s)", self.session_id,
                     error.stage, error.code)
        await database_sync_to_async(session_service.mark_unavailable)(
            self.session_id, error.code, error.message, kind=ErrorKind.PIPELINE, stage=error.stage)
        asyncio.get_running_loop().create_task(self.close(error.code))

    # --- control from the server -----------------------------------------------
    async def control(self, action: str, data: dict[str, Any]) -> None:
        if action == "pause":
            self.paused = True
        elif action == "resume":
            self.paused = False
        elif action == "user_message":
            if self.pipeline_worker is None:
                raise LookupError("the bot has no live connection")
            text = str(data.get("content", ""))
            await self.pipeline_worker.queue_frames(
                [LLMMessagesAppendFrame(messages=[{"role": "user", "content": text}], run_llm=True)])
        elif action == "leave":
            await self.close(str(data.get("reason", "leave")))
        else:
            raise ValueError(f"unknown action {action!r}")

    async def drop(self) -> None:
        """Leave without a word to the database: the cluster declared this bot's worker lost and has
        already failed the session and told its user (fencing). What the forwarder still held is
        forgotten, and the recording is not saved."""
        self.fenced = True
        if self.forwarder is not None:
            self.forwarder.discard()
        await self.close("worker declared lost")

    def release_llm_slot(self) -> None:
        """Lend this session's llama.cpp slot back (the bot is gone, or never started)."""
        if self.bundle.llm_slots is not None:
            self.bundle.llm_slots.release(self.llm_slot)
        self.llm_slot = None

    async def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        await self._stop_pipeline(reason)
        self.release_llm_slot()  # after the pipeline: no request of this session's is left to send
        if self.recording is not None and not self.fenced:
            try:
                await database_sync_to_async(self.recording.save)()
            except Exception:  # noqa: BLE001 - the bot still leaves; the partial file stays on disk
                logger.exception("[VoiceSession] session=%s could not save its recording", self.session_id)
        logger.info("[BotJoin] session=%s bot left (%s)", self.session_id, reason,
                    extra=log_fields(session_id=self.session_id, user_id=self.spec.user_id,
                                     room_url=self.spec.room_url))
