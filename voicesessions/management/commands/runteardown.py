"""Run the teardown sweeper: tear down rooms whose persistence window passed."""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from voicesessions.teardown import sweep_due

logger = logging.getLogger("voicesessions.teardown")


class Command(BaseCommand):
    help = "Tear down voice rooms and sessions whose stored deadlines have passed (loops until stopped)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Sweep once and exit.")
        parser.add_argument("--interval", type=float, default=settings.VOICE_TEARDOWN_POLL_SECONDS,
                            help="Seconds between sweeps.")

    def handle(self, *args, once: bool = False, interval: float = 1.0, **options) -> None:
        while True:
            done = sweep_due()
            if done["rooms"] or done["sessions"] or once:
                self.stdout.write(f"[VoiceSession] sweep: {done['rooms']} room(s) torn down, "
                                  f"{done['sessions']} session(s) ended")
            if once:
                return
            time.sleep(interval)
