"""Delete voice event rows older than a retention period (run it from cron)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from voicesessions.retention import old_recordings, old_rows, prune


class Command(BaseCommand):
    help = ("Delete voice.* events and counted ops events older than --days (events of live sessions are kept), "
            "and the recordings of sessions that ended before then. "
            "Counters in /metrics drop by what is deleted, which Prometheus reads as a counter reset.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, required=True, help="Keep this many days.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args, days: int, dry_run: bool = False, **options) -> None:
        if days < 1:
            raise CommandError("--days must be at least 1")
        if dry_run:
            events, ops = old_rows(days)
            self.stdout.write(f"[VoiceSession] would delete {events.count()} session event(s) and "
                              f"{ops.count()} ops event(s) older than {days} day(s), and "
                              f"{old_recordings(days).count()} recording(s)")
            return

        def progress(name: str, deleted: int, total: int) -> None:
            self.stdout.write(f"[VoiceSession] pruning {name}: {deleted}/{total}")

        pruned = prune(days, progress=progress)
        self.stdout.write(f"[VoiceSession] pruned {pruned.session_events} session event(s) and "
                          f"{pruned.ops_events} ops event(s) older than {days} day(s), and "
                          f"{pruned.recordings} recording(s)")
