"""The event loop a worker process runs its sessions on (VOICE_WORKER_EVENT_LOOP).

Every session's audio goes through one loop: 50 packets a second each way, each a few
callbacks, a timer and a datagram. uvloop (libuv's loop, a well-kept drop-in for asyncio's)
does that work for less CPU: at 8 sessions on one core the worker went from 74-77% to
61-62% of it (docs/benchmarks.md, "The worker's event loop"). "asyncio" keeps the standard
library's loop.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run `main` to completion on the configured loop, as `asyncio.run` does."""
    chosen = settings.VOICE_WORKER_EVENT_LOOP
    if chosen == "uvloop":
        import uvloop

        return uvloop.run(main)
    if chosen == "asyncio":
        return asyncio.run(main)
    main.close()  # never awaited
    raise ImproperlyConfigured(f"VOICE_WORKER_EVENT_LOOP is {chosen!r}: it must be uvloop or asyncio")
