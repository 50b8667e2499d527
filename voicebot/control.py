"""The worker's control endpoint: servers relay WebRTC signalling and control messages here.

Why an HTTP endpoint on the worker: the worker process owns each session's
aiortc peer connection (its UDP sockets are in the SDP answer), so the offer
must be answered there; the Django server authenticates the browser and
forwards. aiohttp is already installed with Pipecat.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web

from voicesessions.sdp import InvalidOffer, check_offer
from voicesessions.workers import SECRET_HEADER, check_control_secret


class ControlledWorker(Protocol):
    """What the control endpoint needs of its worker (BotWorkerProcess), without importing it:
    the worker builds this app, so an import back would make a cycle."""

    worker_id: str
    capacity: int
    sessions: dict[str, Any]

    def active_count(self) -> int: ...

logger = logging.getLogger("voicebot.control")
class ConnectionInUse(Exception):
    """A bare room token tried to replace the owner's live peer connection (answered with 409)."""


def make_app(worker: ControlledWorker) -> web.Application:
    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/health" and not check_control_secret(worker.worker_id,
                                                                  request.headers.get(SECRET_HEADER, "")):
            return web.json_response({"error": "forbidden"}, status=403)
        return await handler(request)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"workerId": worker.worker_id, "capacity": worker.capacity,
                                  "activeSessions": worker.active_count(), "sessions": list(worker.sessions)})

    def bot_for(request: web.Request) -> Any:
        bot = worker.sessions.get(request.match_info["session_id"])
        if bot is None:
            raise web.HTTPNotFound(text='{"error": "no such session on this worker"}', content_type="application/json")
        return bot

    async def offer(request: web.Request) -> web.Response:
        bot = bot_for(request)
        body = await request.json()
        try:
            check_offer(body.get("sdp"))  # the server checked it too; a bad one must never reach the peer
            answer = await bot.handle_offer(body["sdp"], body.get("type", "offer"), body.get("pc_id"),
                                            bool(body.get("restart_pc")), owner=bool(body.get("owner", False)))
        except InvalidOffer as exc:
            return web.json_response({"error": f"invalid offer: {exc}"}, status=400)
        except ConnectionInUse:
            return web.json_response({"error": "connection in use"}, status=409)
        return web.json_response(answer)

    async def candidates(request: web.Request) -> web.Response:
        bot = bot_for(request)
        body = await request.json()
        try:
            await bot.add_ice_candidates(body.get("pc_id", ""), body.get("candidates") or [])
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"status": "success"})

    async def control(request: web.Request) -> web.Response:
        bot = bot_for(request)
        body = await request.json()
        try:
            await bot.control(body.get("action", ""), body)
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[authenticate], client_max_size=1024 * 1024)
    app.router.add_get("/health", health)
    app.router.add_post("/sessions/{session_id}/offer", offer)
    app.router.add_patch("/sessions/{session_id}/offer", candidates)
    app.router.add_post("/sessions/{session_id}/control", control)
    return app
