"""Access log lines through Python logging, so LOG_FORMAT=json covers them too.

Daphne writes its NCSA access lines straight to a stream, outside `logging`,
so they can be neither JSON nor filtered; scripts/serve.sh turns them off
(`--access-log /dev/null`) and this ASGI middleware logs each request instead,
as the `voiceproject.access` logger. The query string is left out: it is the
one part of a URL a client could put a secret in.
"""
from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("voiceproject.access")


class AccessLogMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = time.monotonic()
        state: dict[str, Any] = {"status": None, "bytes": 0}

        async def send_and_note(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                state["status"] = message["status"]
            elif kind == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            elif kind == "websocket.accept":
                state["status"] = 101
            elif kind == "websocket.close" and state["status"] is None:
                state["status"] = 403  # refused before the handshake completed
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope.get("method", "WS")
            status = state["status"] or (500 if scope["type"] == "http" else 403)
            duration_ms = (time.monotonic() - started) * 1000
            client = scope.get("client") or ("-", 0)
            logger.info("%s %s %s %dB %.1fms", method, scope.get("path", ""), status, state["bytes"], duration_ms,
                        extra={"method": method, "path": scope.get("path", ""), "status": status,
                               "bytes": state["bytes"], "durationMs": round(duration_ms, 1), "client": client[0]})
