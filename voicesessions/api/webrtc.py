"""WebRTC signalling for the local provider: the browser's offer reaches the session's bot.

Authenticated by the room token from POST /api/voice/room (header
`Authorization: Bearer <token>`), not by the session cookie, so any WebRTC
peer that holds a token (a browser, a test peer) can connect and nobody
without one can. The bot's worker owns the peer connection, so the offer is
relayed to it (see voicebot/control.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from .. import opsevents
from ..logctx import log_fields
from ..models import LIVE_STATUSES, ErrorKind, RoomState, VoiceRoom, VoiceSession
from ..tokens import InvalidRoomToken, verify_room_token
from .errors import ApiError, error_body
from .serializers import StrictSerializer

logger = logging.getLogger("voicesessions.webrtc")


class OfferSerializer(StrictSerializer):
    sdp = serializers.CharField(max_length=100_000)
    type = serializers.ChoiceField(choices=["offer"])
    pc_id = serializers.CharField(required=False, allow_null=True, max_length=200)
    restart_pc = serializers.BooleanField(required=False, default=False)
    requestData = serializers.JSONField(required=False, allow_null=True)  # sent by Pipecat's JS client


class CandidateSerializer(serializers.Serializer):
    candidate = serializers.CharField(allow_blank=True, max_length=2000)
    sdp_mid = serializers.CharField(required=False, allow_null=True, max_length=64)
    sdp_mline_index = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=64)


class PatchSerializer(StrictSerializer):
    pc_id = serializers.CharField(max_length=200)
    candidates = CandidateSerializer(many=True)


def _room_from_token(request: HttpRequest) -> VoiceRoom:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiError("not_authenticated", "Send the room token as 'Authorization: Bearer <token>'.",
                       status_code=401, fields={"Authorization": ["missing room token"]})
    try:
        claims = verify_room_token(header[7:].strip(), None)
    except InvalidRoomToken as exc:
        if exc.expired:
            opsevents.record_error(ErrorKind.TOKEN_EXPIRY, detail="webrtc offer")
        raise ApiError("invalid_token", f"Room token refused: {exc}.", status_code=401,
                       fields={"Authorization": [str(exc)]}) from exc
    room = VoiceRoom.objects.filter(name=claims.room_name, user_id=claims.user_id, state=RoomState.LIVE).first()
    if room is None:
        raise ApiError("room_not_ready", "The room is torn down; get it again with POST /api/voice/room.",
                       status_code=409)
    return room


def _session_and_worker(room: VoiceRoom) -> tuple[VoiceSession, Any]:
    from voicebot.registry import worker_for

    session = room.sessions.filter(status__in=LIVE_STATUSES).first()
    if session is None:
        raise ApiError("no_session", "No bot was asked to join this room: POST /api/bot/join first.",
                       status_code=409)
    return session, worker_for(session)


async def _wait_for_worker(room: VoiceRoom) -> tuple[VoiceSession, Any]:
    """The room's live session and the worker holding its bot; waits while a worker claims the job.

    Async on purpose: a sync view would hold Django's one thread for sync
    code while it waits.
    """
    deadline = time.monotonic() + settings.VOICE_OFFER_WAIT_SECONDS
    while True:
        session, worker = await sync_to_async(_session_and_worker)(room)
        if worker is not None:
            return session, worker
        if time.monotonic() > deadline:
            raise ApiError("bot_unavailable", "No bot worker took the session in time; is a worker running?",
                           status_code=503, headers={"Retry-After": "2"})
        await asyncio.sleep(0.05)


async def _relay(method: str, worker: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    from voicebot.control import SECRET_HEADER
    from voicebot.registry import control_secret

    try:
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.request(method, f"{worker.control_url}{path}", json=body,
                                            headers={SECRET_HEADER: control_secret(worker.worker_id)})
    except httpx.HTTPError as exc:
        raise ApiError("bot_unavailable", f"The bot worker did not answer ({type(exc).__name__}).",
                       status_code=503, headers={"Retry-After": "2"}) from exc
    if response.status_code == 404:
        raise ApiError("not_found", "The bot does not know this session or peer connection.", status_code=404)
    if response.status_code >= 400:
        raise ApiError("bot_error", f"The bot refused the request ({response.status_code}).", status_code=502)
    return response.json()


def _error_response(exc: ApiError | ValidationError) -> JsonResponse:
    body = json.loads(json.dumps(error_body(exc), default=str))  # ErrorDetail strings -> plain JSON
    response = JsonResponse(body, status=exc.status_code)
    for name, value in getattr(exc, "extra_headers", {}).items():
        response[name] = value
    return response


def _json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError({"body": [f"JSON parse error: {exc}"]}) from exc


@csrf_exempt  # authenticated by the room token, not by a cookie: CSRF does not apply
async def webrtc_offer(request: HttpRequest) -> HttpResponse:
    """POST: send the WebRTC offer, get the bot's answer. PATCH: trickle ICE candidates."""
    if request.method not in ("POST", "PATCH"):
        return JsonResponse({"error": "method_not_allowed", "detail": "Use POST or PATCH."}, status=405)
    try:
        room = await sync_to_async(_room_from_token)(request)
        serializer = (OfferSerializer if request.method == "POST" else PatchSerializer)(data=_json_body(request))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        session, worker = await _wait_for_worker(room)
        path = f"/sessions/{session.pk}/offer"
        if request.method == "PATCH":
            return JsonResponse(await _relay("PATCH", worker, path, json.loads(json.dumps(data))))
        started = time.monotonic()
        body = {"sdp": data["sdp"], "type": data["type"], "pc_id": data.get("pc_id"),
                "restart_pc": data.get("restart_pc", False)}
        while True:
            try:
                answer = await _relay("POST", worker, path, body)
                break
            except ApiError as exc:
                # A worker that just took the job may not know the session for a moment.
                if exc.error_code != "not_found" or time.monotonic() - started > settings.VOICE_OFFER_WAIT_SECONDS:
                    raise
                await asyncio.sleep(0.1)
        latency_ms = (time.monotonic() - started) * 1000
        logger.info("[BotJoin] session=%s offer answered by %s in %.0f ms", session.pk, worker.worker_id,
                    latency_ms, extra=log_fields(session_id=session.pk, user_id=session.user_id, room_url=room.url,
                                                 latency_ms=latency_ms))
        return JsonResponse({**answer, "sessionId": str(session.pk)})
    except (ApiError, ValidationError) as exc:
        if isinstance(exc, ApiError) and exc.error_code in ("bot_unavailable", "bot_error"):
            await sync_to_async(opsevents.record_error)(ErrorKind.BOT_JOIN, detail=exc.error_code)
        return _error_response(exc)
