"""A receiver of signed requests: a custom tool's endpoint, or a webhook's server.

It checks every request as a receiver should (JSON body, `X-Voice-Signature` valid for
its secret and recent, see assistants/signing.py) and records it; answers come from a
script (status, JSON, delay before answering) and default to 200 with `reply`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from assistants.signing import HEADER, verify
from tests.fakes.server import LocalHTTPFake


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    signed: bool  # the signature was valid for the receiver's secret
    status: int = 0  # what the receiver answered


class _Handler(BaseHTTPRequestHandler):
    fake: "SignedReceiver"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        record = Received(self.path, headers, body, data, verify(self.fake.secret, body, headers.get(HEADER.lower(), "")))
        status, payload, delay = self.fake.next_answer(record)
        if delay:
            time.sleep(delay)
        record.status = status
        with self.fake.lock:
            self.fake.received.append(record)
        out = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (its timeout)
            pass


class SignedReceiver(LocalHTTPFake):
    handler_class = _Handler
    url_prefix = ""

    def __init__(self, secret: str, reply: Any = None) -> None:
        self.secret = secret
        self.reply = {"result": "ok"} if reply is None else reply
        self.script: list[tuple[int, Any, float]] = []
        self.down_with: int | None = None  # answer every request with this status (a server that is down)
        self.received: list[Received] = []
        self.lock = threading.Lock()

    def answer_next(self, status: int, payload: Any = None, *, delay: float = 0.0) -> None:
        """The next request gets this answer (queued in order)."""
        with self.lock:
            self.script.append((status, {} if payload is None else payload, delay))

    def next_answer(self, record: Received) -> tuple[int, Any, float]:
        if not record.signed:
            return 401, {"error": "bad signature"}, 0.0
        with self.lock:
            if self.down_with is not None:
                return self.down_with, {"error": "unavailable"}, 0.0
            return self.script.pop(0) if self.script else (200, self.reply, 0.0)

    def signed(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.signed]
