"""llama.cpp's reads ahead kept out of Whisper's decodes on a worker's cores.

On the embedded default, Whisper (CTranslate2) and llama.cpp each use both cores. Run at
once they do not share them well: llama.cpp's threads wait for each other at every step
of the graph, and with Whisper's threads on the same cores each wait can take a
scheduler slice. Measured on 2 idle cores (docs/benchmarks.md): a read of 5-8 new tokens
took 250-270 ms alone and 470-2,700 ms beside a Whisper decode, and the decode 285 ms
alone and ~490 ms beside the reads.

So they take turns. A read ahead (`VoiceLLMService._read`) only saves part of a later
request, while a decode is what the user's turn waits for: a read waits while a decode
runs or waits, and a decode waits only for the reads already running. While the user
speaks those read a few words each (`VoiceLLMService._read_open`: ~90 ms on idle cores);
a notes exchange's or a custom tool's answer is read while the bot speaks (up to ~2 s on
busy cores), so a user who cuts in then has their first decode wait for what is left of
it. Decodes run beside each other (several sessions), and so do reads. The turn's own LLM
request does not wait: nothing is worth more than its answer.

All of a worker's sessions run on its one event loop, so one gate per loop serves them all.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ComputeGate:
    """Whisper's decodes and llama.cpp's reads ahead never at once; a decode waiting goes first."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self.decoding = 0
        self.reading = 0
        self._decodes_waiting = 0

    @asynccontextmanager
    async def decode(self) -> AsyncIterator[None]:
        """Around a Whisper decode: waits for the reads running, none begins until it is done."""
        async with self._changed:
            self._decodes_waiting += 1
            try:
                await self._changed.wait_for(lambda: not self.reading)
            finally:
                self._decodes_waiting -= 1
            self.decoding += 1
        try:
            yield
        finally:
            async with self._changed:
                self.decoding -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        """Around a read ahead: waits until no decode runs or waits."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self.decoding and not self._decodes_waiting)
            self.reading += 1
        try:
            yield
        finally:
            async with self._changed:
                self.reading -= 1
                self._changed.notify_all()


_gates: dict[asyncio.AbstractEventLoop, ComputeGate] = {}


def gate() -> ComputeGate:
    """The gate of the running loop's worker (one per event loop: the tests run several)."""
    loop = asyncio.get_running_loop()
    found = _gates.get(loop)
    if found is None:
        for old in [old for old in _gates if old.is_closed()]:
            del _gates[old]
        found = _gates[loop] = ComputeGate()
    return found
