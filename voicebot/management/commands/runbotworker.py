"""Run a bot worker: claim /join jobs and run their Pipecat bots."""
from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from voicebot.worker import BotWorkerProcess


class Command(BaseCommand):
    help = "Run a bot worker with a pool of warm session slots (or --spawn: one cold process per job)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pool-size", type=int, default=settings.VOICE_WORKER_POOL_SIZE,
                            help="Concurrent sessions this worker runs (its advertised capacity).")
        parser.add_argument("--max-sessions", type=int, default=settings.VOICE_WORKER_MAX_SESSIONS,
                            help="Exit after this many sessions so a supervisor restarts it fresh (0: never).")
        parser.add_argument("--idle-timeout", type=float, default=settings.VOICE_WORKER_IDLE_TIMEOUT,
                            help="Exit after this many seconds without sessions (0: never).")
        parser.add_argument("--host", default="127.0.0.1", help="Interface of the control endpoint.")
        parser.add_argument("--port", type=int, default=0, help="Port of the control endpoint (0: any free).")
        parser.add_argument("--worker-id", default=None, help="Stable id (default: hostname-pid).")
        parser.add_argument("--spawn", action="store_true",
                            help="One process per job: a fresh `python -m voicebot.bot` process per job (cold).")

    def handle(self, *args, **opts) -> None:
        from voicebot.logbridge import route_loguru_to_logging

        route_loguru_to_logging()
        worker = BotWorkerProcess(pool_size=opts["pool_size"], host=opts["host"], port=opts["port"],
                                  worker_id=opts["worker_id"], spawn=opts["spawn"],
                                  idle_timeout=opts["idle_timeout"], max_sessions=opts["max_sessions"])
        asyncio.run(worker.run())
