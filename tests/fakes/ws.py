"""What every fake streaming provider shares: a real websocket server on 127.0.0.1 in a background thread.

The streaming providers (Deepgram's live transcription, Cartesia's and
ElevenLabs' speech) speak over websockets, so their fakes are websocket
servers: `websockets`' threaded server, one thread per connection, with the
handshake checked (path, query, headers) before the upgrade, as the providers
refuse a bad key or a bad parameter with an HTTP status, not a websocket close.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Handshake:
    """One connection attempt as the fake saw it, and what it answered."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 101
    received: list[Any] = field(default_factory=list)  # each message: bytes, or the parsed JSON of a text one
    close_code: int | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def texts(self) -> list[dict[str, Any]]:
        return [m for m in self.received if isinstance(m, dict)]

    @property
    def audio(self) -> bytes:
        return b"".join(m for m in self.received if isinstance(m, bytes))


class Refusal(Exception):
    """The handshake is answered with this HTTP status and JSON body instead of the upgrade."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


class LocalWebsocketFake:
    """Serve `check` (the handshake) and `serve` (one open connection) on a free loopback port.

    Subclasses implement both; `url` is `ws://127.0.0.1:PORT`.
    """

    scheme = "ws"

    def __init__(self) -> None:
        self.handshakes: list[Handshake] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- what a fake defines ----------------------------------------------------------
    def check(self, handshake: Handshake) -> None:
        """Raise Refusal to answer the handshake with an HTTP error."""

    def serve(self, connection: Any, handshake: Handshake) -> None:
        """Talk to one accepted connection until it closes."""
        raise NotImplementedError

    # -- the server ---------------------------------------------------------------------
    def start(self) -> Any:
        from websockets.sync.server import serve

        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request,
                             max_size=16 * 1024 * 1024)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} is not running"
        return self._server.socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def accepted(self) -> list[Handshake]:
        with self._lock:
            return [h for h in self.handshakes if h.status == 101]

    def _process_request(self, connection: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        handshake = Handshake(path=parts.path, query=parse_qs(parts.query, keep_blank_values=True),
                              headers={k.lower(): v for k, v in request.headers.raw_items()})
        with self._lock:
            self.handshakes.append(handshake)
        connection.fake_handshake = handshake
        try:
            self.check(handshake)
        except Refusal as refusal:
            handshake.status = refusal.status
            response = connection.respond(refusal.status, json.dumps(refusal.body))
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    def _handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        handshake: Handshake = connection.fake_handshake
        try:
            self.serve(connection, handshake)
        except ConnectionClosed:
            pass
        finally:
            handshake.close_code = connection.close_code if connection.close_code is not None else 1006


def receive(connection: Any, handshake: Handshake, timeout: float | None) -> Any:
    """The next message (bytes, or a text message's parsed JSON; None for text that is not JSON),
    recorded on `handshake`; raises TimeoutError after `timeout` seconds of nothing."""
    message = connection.recv(timeout=timeout)
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            message = None
    handshake.received.append(message)
    return message


TONE_HZ = 440
SECONDS_PER_CHAR = 0.06  # about 13 characters a second: ordinary speech


def speech(text: str, rate: int, *, speed: float = 1.0) -> tuple[bytes, list[tuple[str, float, float]]]:
    """A fake voice's speech for `text`: a 440 Hz tone as long as the words would take to say,
    s16le mono at `rate`, and each word's (word, start, end) in seconds."""
    import math

    words, timings, clock = text.split(), [], 0.0
    for word in words:
        length = (len(word) + 1) * SECONDS_PER_CHAR / speed
        timings.append((word, round(clock, 3), round(clock + length, 3)))
        clock += length
    count = int(rate * clock)
    fade = min(count // 2, rate // 100)  # 10 ms ramps: no clicks
    out = bytearray()
    for n in range(count):
        gain = min(1.0, n / fade, (count - 1 - n) / fade) if fade else 1.0
        out += int(0.3 * 32767 * gain * math.sin(2 * math.pi * TONE_HZ * n / rate)).to_bytes(2, "little", signed=True)
    return bytes(out), timings
