"""How loaded a worker is, and how many more sessions it may take (admission control).

A slot count alone admits a sixth session to a worker whose five already use every core
it has, and then all six lag. The worker measures its own CPU use over a short window
(`LoadMeter`: the process's CPU seconds, every thread included, the local models' too,
over wall-clock seconds, per core it may run on) and admits new sessions only while
that stays under VOICE_WORKER_MAX_LOAD, as many as the load the current ones cost leaves
room for (`admitting`).
"""
from __future__ import annotations

import collections
import os
import time
from typing import Callable


def usable_cores() -> int:
    """The cores this process may run on (taskset and cgroups' cpusets narrow them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LoadMeter:
    """This process's CPU use over the last `window` seconds, as a share of its usable cores (0-1)."""

    def __init__(self, window: float = 5.0, *, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time, cores: int | None = None) -> None:
        self.window, self.clock, self.cpu = window, clock, cpu
        self.cores = cores or usable_cores()
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self.load = 0.0

    def sample(self) -> float:
        """Take a sample now and return the load over the window (0 until a second sample)."""
        now, used = self.clock(), self.cpu()
        self._samples.append((now, used))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()  # keep one sample at or beyond the window's start
        first_at, first_used = self._samples[0]
        if now > first_at:
            self.load = max(0.0, (used - first_used) / (now - first_at) / self.cores)
        return self.load


def admitting(capacity: int, active: int, load: float, max_load: float) -> int:
    """How many more sessions a worker with `active` of `capacity` sessions and this load may take.

    An idle worker takes up to its capacity (its load is not its sessions'); a busy one
    none once it reaches `max_load`, else as many as the current sessions' average cost
    leaves room for under it.
    """
    room = max(0, capacity - active)
    if not room or active == 0:
        return room
    if load >= max_load:
        return 0
    per_session = load / active
    if per_session <= 0:
        return room
    return max(0, min(room, int((max_load - load) / per_session)))
