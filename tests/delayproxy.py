"""A TCP proxy that adds a fixed delay each way: a slow link where the kernel has no `netem`.

Issue 16, scenario 6: the servers reach PostgreSQL and Redis through it, 50 ms each way.
Every chunk read is written on `delay` seconds later, in order, so the stream is intact
and only late. (toxiproxy and tc-netem do this elsewhere; neither is on these machines,
and the twenty lines below need nothing but asyncio.)

    python -m tests.delayproxy --listen 10.213.40.1:6432 --to 10.213.40.1:5432 --delay-ms 50
"""
from __future__ import annotations

import argparse
import asyncio
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader -> writer, each chunk `delay` seconds after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((time.monotonic() + delay, b""))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def serve(listen: tuple[str, int], to: tuple[str, int], delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*to)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pump(client_reader, upstream_writer, delay), _pump(upstream_reader, client_writer, delay))

    server = await asyncio.start_server(handle, *listen)
    print(f"DELAY_PROXY {listen[0]}:{listen[1]} -> {to[0]}:{to[1]} +{delay * 1000:.0f} ms each way", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=_address)
    parser.add_argument("--to", required=True, type=_address)
    parser.add_argument("--delay-ms", type=float, default=50)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.to, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
