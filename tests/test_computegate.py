"""The worker's compute gate: Whisper's decodes and llama.cpp's reads ahead never run at once,
and a decode waiting goes before a read."""
from __future__ import annotations

import asyncio

import pytest

from voicebot.computegate import ComputeGate, gate


async def _turns(n: int = 20) -> None:
    """Let every other task of the loop run `n` times (whatever could go on has gone on)."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_read_waits_for_every_running_decode_and_decodes_run_beside_each_other():
    async def main() -> list[str]:
        g, order = ComputeGate(), []
        done = [asyncio.Event(), asyncio.Event()]

        async def decode(n: int) -> None:
            async with g.decode():
                order.append(f"decode {n}")
                await done[n].wait()

        async def read() -> None:
            async with g.read():
                order.append("read")

        decodes = [asyncio.create_task(decode(0)), asyncio.create_task(decode(1))]  # two sessions at once
        await _turns()
        reader = asyncio.create_task(read())
        await _turns()
        assert order == ["decode 0", "decode 1"] and g.decoding == 2
        done[0].set()
        await _turns()
        assert not reader.done()  # the other decode still runs
        done[1].set()
        await asyncio.gather(reader, *decodes)
        return order

    assert asyncio.run(main()) == ["decode 0", "decode 1", "read"]


def test_a_decode_waits_only_for_the_read_running_and_goes_before_reads_that_waited_longer():
    async def main() -> list[str]:
        g, order, release = ComputeGate(), [], asyncio.Event()

        async def read(name: str, until: asyncio.Event | None = None) -> None:
            async with g.read():
                order.append(name)
                if until is not None:
                    await until.wait()

        async def decode() -> None:
            async with g.decode():
                order.append("decode")

        first = asyncio.create_task(read("read 1", release))
        await _turns()
        decoder = asyncio.create_task(decode())
        await _turns()
        later = asyncio.create_task(read("read 2"))  # asked while the decode waits: after it
        await _turns()
        assert order == ["read 1"]
        release.set()
        await asyncio.gather(first, decoder, later)
        return order

    assert asyncio.run(main()) == ["read 1", "decode", "read 2"]


def test_a_cancelled_or_failed_holder_lets_the_others_go():
    async def main() -> None:
        g = ComputeGate()
        with pytest.raises(RuntimeError):
            async with g.decode():
                raise RuntimeError("Whisper failed")
        stuck = asyncio.Event()

        async def read() -> None:
            async with g.read():
                await stuck.wait()

        reader = asyncio.create_task(read())
        await _turns()
        assert g.reading == 1
        reader.cancel()  # a session ended mid-read
        with pytest.raises(asyncio.CancelledError):
            await reader
        async with asyncio.timeout(5):
            async with g.decode():
                assert g.reading == 0 and g.decoding == 1

    asyncio.run(main())


def test_a_decode_cancelled_while_it_waits_does_not_hold_back_the_reads():
    async def main() -> None:
        g, release = ComputeGate(), asyncio.Event()

        async def read(until: asyncio.Event | None = None) -> None:
            async with g.read():
                if until is not None:
                    await until.wait()

        async def decode() -> None:
            async with g.decode():
                pass

        first = asyncio.create_task(read(release))
        await _turns()
        decoder = asyncio.create_task(decode())
        await _turns()
        decoder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await decoder
        release.set()
        await first
        async with asyncio.timeout(5):
            await read()

    asyncio.run(main())


def test_each_event_loop_has_its_own_gate():
    async def mine() -> ComputeGate:
        assert gate() is gate()
        return gate()

    assert asyncio.run(mine()) is not asyncio.run(mine())
