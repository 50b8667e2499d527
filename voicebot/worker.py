"""`manage.py runbotworker`: a process that claims bot join jobs and runs their bots.

The default keeps models loaded once per process and shares them across a
pool of session slots (warm). `--spawn` keeps the original one-process-per-job design
available for comparison: every job is handed to a fresh `python -m voicebot.bot` process
that imports and loads everything itself (cold).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from aiohttp import web
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from voicesessions import opsevents
from voicesessions import sessions as session_service
from voicesessions.logctx import log_fields
from voicesessions.models import LIVE_STATUSES, OpsEventKind, VoiceSession
from voicesessions import workerloss, workers
from voicesessions.queue import ClaimedJob, get_queue

from webhooks.delivery import deliver_forever

from . import custom_tools
from .control import make_app
from .ice import restrict_host_candidates
from .load import LoadMeter, admitting
from .memory import release_freed_memory, resident_mib
from .services.assistant_models import UnsupportedModels, for_models, offers
from .session import BotSession, DailyJoinError
from .sharedmodels import prioritise_turn_model
from .summary import summariser

logger = logging.getLogger("voicebot.worker")
# A hosted-model worker's threads run this many nice steps below its turn model by default
# (nice 10 weighs 110 against 0's 1024: the verdict gets ~90% of a contended core).
HOSTED_LOOP_NICE = 10
HOSTED_LONG_FRAMES_LOAD = 0.5  # the load from which a hosted-model worker hears its users in longer frames
# How often an idle worker asks the database for prompts added since it started (seconds): each
# heartbeat's two queries took an idle worker from 1.1-1.2% to 1.35-1.4% of a core
# (bench/bench_idle_worker.py); a new tool waits at most this long to be read.
NEW_PROMPTS_EVERY = 30.0
CACHED_TOOL_PROMPTS = 64  # custom tools' check prompts an idle worker reads ahead (~4 MiB of cache each)


class BotWorkerProcess:
    def __init__(self, *, pool_size: int, host: str = "127.0.0.1", port: int = 0, worker_id: str | None = None,
                 spawn: bool = False, idle_timeout: float = 0, max_sessions: int = 0,
                 only_job: ClaimedJob | None = None, claimed_by: str | None = None) -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.capacity = pool_size
        self.host = host
        self.port = port
        self.spawn = spawn
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.only_job = only_job  # a spawned child runs exactly this job, then exits
        self.claimed_by = claimed_by or self.worker_id
        self.sessions: dict[str, BotSession] = {}
        self.children: dict[str, subprocess.Popen] = {}
        self.sessions_started = 0
        self.bundle: Any = None
        self.ice_servers: list[Any] = []
        self.stopping = asyncio.Event()
        self.queue = get_queue()
        self.load = LoadMeter(settings.VOICE_WORKER_LOAD_WINDOW)
        # The lease (see _watch_lease): renewed by every heartbeat the database took.
        self.lease_from = time.monotonic()
        self.heartbeat_started: float | None = None  # an attempt in flight, since
        self.heartbeat_failed = False
        self.let_go: set[str] = set()  # sessions dropped when the lease lapsed, not yet failed in the database
        self._count_at_heartbeat = 0  # live sessions at the latest heartbeat: fewer now, memory is handed back
        self.warmed_prompts: set[str] = set()  # what the local LLM has read into its cache for the sessions to come
        self._reading: asyncio.Task[None] | None = None  # a read of prompts added since, while idle
        self._prompts_looked_at = time.monotonic()  # when the database was last asked for new prompts

    def active_count(self) -> int:
        return len(self.sessions) + len(self.children)

    def free_slots(self) -> int:
        """Sessions it may take now: its slots, as far as its measured load allows (load.py); none
        while its lease has lapsed (cut off from the database, it must not start what it cannot keep)."""
        if self.let_go or self._lease_lapsed():
            return 0
        return admitting(self.capacity, self.active_count(), self.load.sample(), settings.VOICE_WORKER_MAX_LOAD)

    # --- the lease --------------------------------------------------------------
    @staticmethod
    def lease_seconds() -> float:
        """How long a worker holds its sessions without reaching the database: shorter than the
        dead-worker window by two heartbeats, so it lets them go before any other process can
        declare it lost and hand its jobs to another worker (leases expire first at the holder)."""
        dead_after, beat = settings.VOICE_WORKER_DEAD_AFTER, settings.VOICE_WORKER_HEARTBEAT_SECONDS
        return max(dead_after / 2, dead_after - 2 * beat)

    def _lease_lapsed(self) -> bool:
        return time.monotonic() - self.lease_from > self.lease_seconds()

    def _database_trouble(self) -> bool:
        """The latest heartbeat failed, or one has hung for two intervals (a link that drops packets
        makes libpq wait up to DATABASE_TCP_USER_TIMEOUT_MS). A merely busy event loop is not
        trouble: its heartbeats are late, not failing."""
        hung = (self.heartbeat_started is not None
                and time.monotonic() - self.heartbeat_started > 2 * settings.VOICE_WORKER_HEARTBEAT_SECONDS)
        return self.heartbeat_failed or hung

    # --- main ------------------------------------------------------------------
    async def run(self) -> None:
        restrict_host_candidates(settings.VOICE_WEBRTC_HOSTS)
        if not self.spawn:
            started = time.monotonic()
            from .services import load_bundle

            prompts = await self._likely_prompts()
            self.bundle = await asyncio.to_thread(load_bundle, prompts)
            self.warmed_prompts.update(prompts)
            logger.info("[BotJoin] worker %s models ready in %.1fs", self.worker_id, time.monotonic() - started)
            nice = loop_nice(self.bundle)
            if prioritise_turn_model(nice):
                logger.info("[BotJoin] worker %s threads run %d nice steps below the turn model", self.worker_id, nice)
        runner = web.AppRunner(make_app(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        control_url = self.control_url = f"http://{settings.VOICE_WORKER_ADVERTISE_HOST or self.host}:{self.port}"
        await database_sync_to_async(workers.register)(self.worker_id, control_url, self.capacity,
                                                       offers(self.bundle))
        self.lease_from = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stopping.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        tasks = [loop.create_task(self._heartbeat_loop(), name="heartbeat"),
                 loop.create_task(self._watch_lease(), name="lease")]
        if self.only_job is not None:
            await self._start_session(self.only_job)
        else:
            tasks.append(loop.create_task(self._claim_loop(), name="claim"))
            # Every worker also delivers webhooks, like the sweeper: they go out while any worker lives.
            summarise = summariser(self.bundle) if self.bundle is not None else None
            tasks.append(loop.create_task(deliver_forever(self.stopping, summarise=summarise), name="webhooks"))
        print(f"[BotJoin] worker {self.worker_id} listening on {control_url} "
              f"pool={self.capacity} mode={'spawn' if self.spawn else 'warm'}", flush=True)
        try:
            await self.stopping.wait()
        finally:
            await self._shutdown(tasks, runner)

    async def _shutdown(self, tasks: list[asyncio.Task], runner: web.AppRunner) -> None:
        for task in tasks:
            task.cancel()
        # Let them finish cancelling (the webhook deliverer gives back its leases).
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._reading is not None:
            self._reading.cancel()
        for bot in list(self.sessions.values()):
            await bot.close("worker stopping")
        for child in self.children.values():
            child.terminate()
        # A stopping worker's sessions cannot go on: tell their users now rather
        # than after the heartbeat times out.
        await database_sync_to_async(workerloss.fail_sessions_of)(self.worker_id, "worker_stopped")
        await database_sync_to_async(workers.stop)(self.worker_id)
        await runner.cleanup()
        await self.queue.aclose()
        if self.bundle is not None:
            await self.bundle.aclose()
        logger.info("[BotJoin] worker %s stopped", self.worker_id)

    # --- jobs ------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            # Measured once a round: free_slots() samples the process's CPU load.
            may_claim = bool(self.free_slots()) and not self._recycling()
            if may_claim:
                try:
                    job = await database_sync_to_async(self.queue.claim)(self.worker_id)
                except Exception as exc:  # queue or database briefly unreachable: keep polling
                    logger.warning("[BotJoin] claim failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(1)
                    continue
                if job is not None:
                    await self._start_job(job)
                    idle_since = time.monotonic()
                    continue
            if self.active_count():
                idle_since = time.monotonic()
            elif self._recycling() or (self.idle_timeout and time.monotonic() - idle_since > self.idle_timeout):
                logger.info("[BotJoin] worker %s idle/recycling: exiting", self.worker_id)
                self.stopping.set()
                return
            if may_claim:
                await self.queue.wait_for_jobs(settings.VOICE_WORKER_POLL_SECONDS)  # woken by a new job
            else:
                await asyncio.sleep(settings.VOICE_WORKER_POLL_SECONDS)

    def _recycling(self) -> bool:
        return bool(self.max_sessions) and self.sessions_started >= self.max_sessions

    async def _start_job(self, job: ClaimedJob) -> None:
        self.sessions_started += 1
        if self.spawn:
            self._spawn_child(job)
            return
        try:
            await self._start_session(job)
        except Exception as exc:  # a broken job must not take the worker down, nor leave the user waiting
            logger.exception("[BotJoin] job %s failed", job.job_id)
            bot = self.sessions.pop(job.spec.session_id, None)
            if bot is not None:
                await bot.close("start failed")
            await database_sync_to_async(self.queue.fail)(job.job_id, self.claimed_by, repr(exc))
            await database_sync_to_async(session_service.mark_unavailable)(
                job.spec.session_id, "bot_join_failed", f"The assistant could not start ({type(exc).__name__}).")

    def _spawn_child(self, job: ClaimedJob) -> None:
        """One process per join, as a cold baseline; it reads the job's row for the rest."""
        cmd = [sys.executable, "-m", "voicebot.bot", "--job-id", job.job_id, "--claimed-by", self.worker_id]
        self.children[job.job_id] = subprocess.Popen(cmd, cwd=settings.BASE_DIR)
        logger.info("[BotJoin] spawned pid=%s for job %s", self.children[job.job_id].pid, job.job_id)

    async def _likely_prompts(self, *, every_tool: bool = False) -> list[str]:
        """The assistants' system prompts, then their custom tools' check prompts, for the warm-up to
        read into the LLM's cache: at start only as many tools' as the slots left (the worker is not
        ready until they are read, ~2 s each on 2 cores), once idle `every_tool` (up to
        CACHED_TOOL_PROMPTS). llama.cpp's server keeps every prompt it has read in a cache in host
        memory (`cache_ram_mib`, 8 GiB by default) and takes it back into whichever slot a request
        gets: nine check prompts read one after another through four slots were each found again
        (docs/benchmarks.md, 2026-12-07), so an assistant's fifth tool need not be read while its
        user waits."""
        from .services.llm import LOCAL_SLOTS
        from .session import assistant_prompts, tool_check_prompts

        def read() -> list[str]:
            prompts = assistant_prompts(LOCAL_SLOTS)
            return prompts + tool_check_prompts(CACHED_TOOL_PROMPTS if every_tool else LOCAL_SLOTS - len(prompts))

        try:
            return await database_sync_to_async(read)()
        except Exception as exc:  # noqa: BLE001 - an optimisation: the worker starts without it
            logger.warning("[BotJoin] could not read the assistants' prompts to warm the LLM: %s", exc)
            return []

    async def _start_session(self, job: ClaimedJob) -> None:
        spec = job.spec
        claimed = time.monotonic()
        if self.bundle is None:  # spawned child: load cold, for this one session (and warm for it alone)
            from .services import load_bundle
            from .services.llm import compose_prompt

            self.bundle = await asyncio.to_thread(load_bundle, [compose_prompt(spec.system_prompt, spec.persona)],
                                                  slots=1)
        try:  # the assistant's own transcriber, LLM and voice, where it names them
            bundle = await database_sync_to_async(for_models)(self.bundle, spec.models)
        except UnsupportedModels as exc:
            await self._cannot_serve(job, exc)
            return
        tools = await database_sync_to_async(custom_tools.load)(spec.tools)
        # Registered here before the database names this worker as the bot's
        # home: from that moment servers relay the user's offer to us.
        bot = BotSession(self, spec, bundle, tools)
        self.sessions[spec.session_id] = bot
        session = await database_sync_to_async(session_service.claim_for_worker)(spec.session_id, self.worker_id)
        if session is None or session.status not in LIVE_STATUSES:
            self.sessions.pop(spec.session_id, None)
            bot.release_llm_slot()
            await database_sync_to_async(self.queue.ack)(job.job_id, self.claimed_by)
            logger.info("[BotJoin] job %s: session already over, skipped", job.job_id)
            return
        if spec.provider == "daily":
            try:
                await bot.start_daily(await database_sync_to_async(_bot_daily_token)(spec))
            except DailyJoinError as exc:
                await self._join_failed(job, bot, str(exc))
                return
        # The bot is ready for the user's media (in the Daily room): the job is done.
        await database_sync_to_async(self.queue.ack)(job.job_id, self.claimed_by)
        bot.prime()
        latency_ms = (time.monotonic() - claimed) * 1000
        logger.info("[BotJoin] session=%s ready on %s (attempt %s) %.0f ms after the claim", spec.session_id,
                    self.worker_id, job.attempts, latency_ms,
                    extra=log_fields(session_id=spec.session_id, user_id=spec.user_id, room_url=spec.room_url,
                                     latency_ms=latency_ms, worker=self.worker_id))

    async def _cannot_serve(self, job: ClaimedJob, exc: UnsupportedModels) -> None:
        """The assistant names a model this worker does not run: fail the job and tell the user
        which one (the join's early check refuses it when no live worker runs it at all)."""
        logger.warning("[BotJoin] session=%s: %s", job.spec.session_id, exc)
        await database_sync_to_async(self.queue.fail)(job.job_id, self.claimed_by, str(exc))
        await database_sync_to_async(session_service.mark_unavailable)(
            job.spec.session_id, exc.code, str(exc), stage=exc.stage)

    async def _join_failed(self, job: ClaimedJob, bot: BotSession, reason: str) -> None:
        """Daily refused the bot: fail the job and tell the user why, instead of leaving the
        session in `connecting`. A new join (the page's Retry) starts over."""
        session_id = job.spec.session_id
        logger.warning("[BotJoin] session=%s could not join its Daily room: %s", session_id, reason)
        self.sessions.pop(session_id, None)
        await bot.close("join failed")
        await database_sync_to_async(self.queue.fail)(job.job_id, self.claimed_by, reason)
        await database_sync_to_async(session_service.mark_unavailable)(
            session_id, "bot_join_failed", f"The assistant could not join the room: {_daily_reason(reason)}.")

    # --- housekeeping ---------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        interval = settings.VOICE_WORKER_HEARTBEAT_SECONDS
        while True:
            started = self.heartbeat_started = time.monotonic()
            try:
                try:
                    alive = await database_sync_to_async(workers.heartbeat)(
                        self.worker_id, self.active_count(), load=self.load.sample(), admitting=self.free_slots())
                except Exception:
                    self.heartbeat_failed = True
                    raise
                finally:
                    self.heartbeat_started = None
                self.heartbeat_failed = False
                if not alive and not self.stopping.is_set():
                    await self._rejoin()
                elif self.let_go:
                    await self._fail_let_go()
                self.lease_from = started  # renewed as of when the heartbeat was sent
                self._frames_follow_load()
                await self._reap()
                await self._release_memory()
                await self._read_new_prompts()
                if not self.only_job:
                    # Every worker also runs the sweeper, so deadlines fire
                    # while any worker is alive; the sweeps are race-safe.
                    await database_sync_to_async(_sweep)()
            except Exception:
                logger.exception("[BotJoin] heartbeat failed")
            await asyncio.sleep(interval)

    async def _watch_lease(self) -> None:
        """Let every session go once the lease lapses while the database is out of reach.

        Cut off from the database (its clients may still reach it), a worker cannot record what
        its bots hear and say, and after VOICE_WORKER_DEAD_AFTER the cluster declares it lost,
        fails its sessions, tells their users and may start their bots elsewhere. A bot that
        went on talking would contradict what the user was told, and could double-serve a job
        handed on. So the worker ends its sessions first: it hangs up their peers and writes
        nothing (what the database did not take by then is fenced off anyway). A shorter cut
        loses nothing: the forwarders hold the events until the database is back.
        """
        while True:
            await asyncio.sleep(settings.VOICE_WORKER_HEARTBEAT_SECONDS / 2)
            await self._check_lease()

    async def _check_lease(self) -> None:
        if (self.sessions or self.children) and self._database_trouble() and self._lease_lapsed():
            await self._let_go_of_sessions()

    async def _let_go_of_sessions(self) -> None:
        logger.warning("[BotJoin] worker %s has not reached the database for %.1fs (its lease): ending %d "
                       "session(s) without a word; the cluster fails them and tells their users", self.worker_id,
                       time.monotonic() - self.lease_from, len(self.sessions) + len(self.children))
        self.let_go |= set(self.sessions)
        await self._drop(list(self.sessions))

    async def _fail_let_go(self) -> None:
        """Back in reach with its registration standing (no other process swept it meanwhile):
        the sessions it let go are failed here, so their users are told."""
        ended = await database_sync_to_async(workerloss.fail_sessions_of)(self.worker_id, "worker_lost")
        logger.warning("[BotJoin] worker %s back in reach of the database: %d session(s) it let go marked "
                       "unavailable", self.worker_id, ended)
        self.let_go.clear()

    async def _rejoin(self) -> None:
        """The cluster declared this worker lost while it could not reach the database (a cut link):
        its sessions were failed and their users told, and another worker may serve them now.
        So it drops them without writing a word (their events are fenced off anyway), then
        registers again as a new incarnation and takes new jobs."""
        # The sessions the cluster failed are no longer live; one claimed in the moment between
        # the link's return and this heartbeat still is, and stays.
        lost = await database_sync_to_async(_ended_sessions)(list(self.sessions))
        logger.warning("[BotJoin] worker %s was declared lost while cut off: dropping %d session(s), "
                       "which the cluster already failed, and registering again", self.worker_id,
                       len(lost) + len(self.children))
        await self._drop(lost)
        self.let_go.clear()  # the cluster failed those
        await database_sync_to_async(workers.register)(self.worker_id, self.control_url, self.capacity,
                                                       offers(self.bundle))
        self.lease_from = time.monotonic()

    async def _drop(self, session_ids: list[str]) -> None:
        """Leave these sessions without a word to the database (fencing), and stop every child."""
        for session_id in session_ids:
            bot = self.sessions.pop(session_id, None)
            if bot is not None:
                await bot.drop()
        for child in self.children.values():
            child.terminate()
        self.children.clear()

    async def _reap(self) -> None:
        """Close bots whose session ended (teardown, maxDuration) and forget exited children."""
        ended = await database_sync_to_async(_ended_sessions)(list(self.sessions))
        for session_id in ended:
            bot = self.sessions.pop(session_id, None)
            if bot is not None:
                await bot.close("session ended")
        for job_id, child in list(self.children.items()):
            if child.poll() is not None:
                del self.children[job_id]
        if self.only_job and not self.sessions:
            self.stopping.set()

    def _frames_follow_load(self) -> None:
        """The user's audio in longer frames while the worker is busy, 20 ms while it is not
        (mediapath.InputFrames: CPU against ~20 ms of voice-to-voice)."""
        from . import mediapath

        before = mediapath.input_frames.join
        after = mediapath.input_frames.follow_load(self.load.load, long_frames_load(self.bundle))
        if after != before:
            logger.info("[BotJoin] worker %s at %.0f%% load: the user's audio in %d ms frames", self.worker_id,
                        self.load.load * 100, after * mediapath.FRAME_MS)

    async def _release_memory(self) -> None:
        """Sessions ended since the last heartbeat: hand what they freed back to the system, or the
        worker's RSS stays at its busiest moment (memory.py)."""
        count = self.active_count()
        ended, self._count_at_heartbeat = count < self._count_at_heartbeat, count
        if ended:
            before = resident_mib()
            await asyncio.to_thread(release_freed_memory)
            logger.info("[BotJoin] worker %s: sessions ended, RSS %.0f -> %.0f MiB", self.worker_id, before,
                        resident_mib())

    async def _read_new_prompts(self) -> None:
        """While no session runs, have the local LLM read the prompts of assistants and custom tools
        added or edited since the worker started (or last read), so a new tool's first check does not
        read its prompt while the user waits (1.4-2.4 s on 2 cores, session.tool_check_prompts). Not
        during a session: the read would take the CPU from its answers."""
        if (self.bundle is None or not getattr(self.bundle, "local_llm", False) or self.active_count()
                or (self._reading is not None and not self._reading.done()) or not settings.VOICE_WARM_MODELS
                or time.monotonic() - self._prompts_looked_at < NEW_PROMPTS_EVERY):
            return
        self._prompts_looked_at = time.monotonic()
        new = [prompt for prompt in await self._likely_prompts(every_tool=True) if prompt not in self.warmed_prompts]
        if not new:
            return
        self._reading = asyncio.get_running_loop().create_task(self._read_prompts(new), name="read-prompts")

    async def _read_prompts(self, prompts: list[str]) -> None:
        started, read = time.monotonic(), 0
        try:
            for prompt in prompts:
                if self.active_count():  # a session came: its answers come first; the rest at the next idle look
                    break
                await asyncio.to_thread(self.bundle.prime_llm, prompt)
                self.warmed_prompts.add(prompt)
                read += 1
        except Exception as exc:  # noqa: BLE001 - an optimisation: the first check reads it instead
            logger.warning("[BotJoin] worker %s could not read new prompts into the LLM's cache: %s", self.worker_id, exc)
            return
        logger.info("[BotJoin] worker %s read %d new prompt(s) into the LLM's cache in %.1fs", self.worker_id,
                    read, time.monotonic() - started)



def long_frames_load(bundle: Any) -> float:
    """VOICE_INPUT_LONG_FRAMES_LOAD, or its default for `bundle`: HOSTED_LONG_FRAMES_LOAD when no
    model runs in this worker; never when one does. A local model's threads load the cores, not the
    loop, and one or two users would pay ~20 ms a turn for CPU the loop does not lack."""
    if settings.VOICE_INPUT_LONG_FRAMES_LOAD is not None:
        return settings.VOICE_INPUT_LONG_FRAMES_LOAD
    return math.inf if bundle is None or bundle.runs_models else HOSTED_LONG_FRAMES_LOAD


def loop_nice(bundle: Any) -> int:
    """VOICE_WORKER_LOOP_NICE, or its default for `bundle`: 10 when no model runs in this worker."""
    if settings.VOICE_WORKER_LOOP_NICE is not None:
        return settings.VOICE_WORKER_LOOP_NICE
    return 0 if bundle.runs_models else HOSTED_LOOP_NICE


def _ended_sessions(session_ids: list[str]) -> list[str]:
    if not session_ids:
        return []
    live = set(str(pk) for pk in VoiceSession.objects.live().filter(pk__in=session_ids)
               .values_list("pk", flat=True))
    return [sid for sid in session_ids if sid not in live]


def _sweep() -> None:
    import datetime as dt

    from voicesessions.teardown import sweep_due

    sweep_due()
    workerloss.mark_dead_workers()
    get_queue().republish_stale(dt.timedelta(seconds=60))  # Redis may have lost an entry


def _daily_reason(message: str) -> str:
    """Daily's reason without Pipecat's "Error joining <url>:" preamble."""
    return message.split(": ", 1)[1] if message.startswith("Error joining ") else message


def _bot_daily_token(spec: Any) -> str:
    import datetime as dt
    import uuid

    from voicesessions.providers import get_provider

    expires = timezone.now() + dt.timedelta(seconds=spec.max_duration + 600)
    # "bot-" and the session's 32 hex digits: Daily's 36-character user_id limit, nothing cut off.
    token = get_provider("daily").issue_token(spec.room_name, user_id=f"bot-{uuid.UUID(spec.session_id).hex}",
                                              user_name=spec.persona or "Assistant", expires_at=expires,
                                              is_owner=True)
    opsevents.record(OpsEventKind.TOKEN_ISSUED, "daily", session=spec.session_id)
    return token

