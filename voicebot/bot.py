"""`python -m voicebot.bot`: one bot for one job in its own process (the cold spawn baseline).

--job-id and --claimed-by say which queued job this process serves; the
job's row carries everything else (room, voiceOnly, sessionPersistence). It
loads the models itself, runs the one session and exits.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one voice bot session")
    parser.add_argument("--job-id", required=True, help="The BotJob this process runs.")
    parser.add_argument("--claimed-by", required=True, help="The worker that claimed the job.")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
    import django

    django.setup()
    from voicesessions.models import BotJob
    from voicesessions.queue import BotJobSpec, ClaimedJob

    from .logbridge import route_loguru_to_logging
    from .worker import BotWorkerProcess

    route_loguru_to_logging()
    job = BotJob.objects.get(pk=args.job_id)
    claimed = ClaimedJob(str(job.pk), BotJobSpec.from_dict(job.payload), job.attempts)
    worker = BotWorkerProcess(pool_size=1, only_job=claimed, claimed_by=args.claimed_by,
                              worker_id=f"{args.claimed_by}-spawn-{os.getpid()}")
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
