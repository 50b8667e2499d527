"""Bounded polls: tests wait for a condition, never for a fixed time."""
from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def await_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """The asyncio twin of `wait_until`: the event loop keeps running while it waits.
    `condition` may also return an awaitable (a database read through sync_to_async)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def heard_answer(peer: Any, timeout: float = 20, frames: int = 10) -> None:
    """Wait until the WebRTC peer has heard at least `frames` loud frames of the bot's speech."""
    await await_until(lambda: peer.heard.loud_frames > frames, timeout, "the bot's answer to be heard")
