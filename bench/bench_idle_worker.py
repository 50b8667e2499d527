"""What an idle bot worker costs: its CPU while no session runs and no job comes.

Starts `manage.py runbotworker --pool-size 2` on a fresh SQLite database (the embedded
default's queue) or, with `--redis`, on the local PostgreSQL and Redis (production's
queue), waits until it listens, lets it settle, then reads its CPU ticks from
/proc/<pid>/stat over a window. Run it on an otherwise idle machine.

    .venv/bin/python bench/bench_idle_worker.py [--seconds 20] [--runs 2] [--redis]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def one_run(seconds: float, redis: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="voice-bench-idle-") as tmp:
        env = {**os.environ, "VOICE_VAR_DIR": tmp, "SECRET_KEY": "bench", "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        if redis:
            name = f"bench_idle_{uuid.uuid4().hex[:8]}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                           check=True, capture_output=True)
            env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}", REDIS_URL="redis://127.0.0.1:6379/0",
                       VOICE_BOT_QUEUE="voicesessions.redis_queue.RedisStreamBotJobQueue")
        else:
            env.update(DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3", REDIS_URL="",
                       VOICE_BOT_QUEUE="voicesessions.queue.DatabaseBotJobQueue")
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        log = Path(tmp) / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen([PY, "manage.py", "runbotworker", "--pool-size", "2"], cwd=ROOT, env=env,
                                      stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while "listening" not in log.read_text():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the worker did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
            time.sleep(10)  # the warm-up's threads wind down, the first heartbeats pass
            start_ticks, start = cpu_ticks(worker.pid), time.monotonic()
            time.sleep(seconds)
            used = (cpu_ticks(worker.pid) - start_ticks) / os.sysconf("SC_CLK_TCK")
            return 100 * used / (time.monotonic() - start)
        finally:
            worker.terminate()
            worker.wait(60)
            if redis:
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE {name}"],
                               capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--redis", action="store_true", help="PostgreSQL + Redis queue instead of SQLite")
    args = parser.parse_args()
    queue = "Redis stream (PostgreSQL)" if args.redis else "database (SQLite)"
    figures = [one_run(args.seconds, args.redis) for _ in range(args.runs)]
    print(f"idle worker, {queue} queue, {args.seconds:.0f} s a run, load average {os.getloadavg()[0]:.2f}: "
          + ", ".join(f"{f:.2f}%" for f in figures) + " of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
