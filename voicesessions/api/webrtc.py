"""WebRTC signalling for the local provider: the browser's offer reaches the session's bot.

Authenticated by the room token from POST /api/voice/room, sent as
`Authorization: Bearer <token>` (or `X-Room-Token: <token>` when the
Authorization header carries the user's DRF token). Any WebRTC peer that
holds a token (a browser, a test peer) can connect and nobody without one
can. Every use checks the token's room incarnation (a teardown revokes it)
and that its user is still active.

The offer is also marked as the owner's when the request is signed in as the
token's user (session cookie or `Authorization: Token <key>`): only such an
offer may replace a peer connection that is already live, so a leaked room
token cannot take over the owner's call. The bot's worker owns the peer
connection, so the offer is relayed to it (see voicebot/control.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from .. import opsevents, safejson
from ..auth import user_for_token
from ..botclient import BotRefused, BotUnreachable, relay_signalling
from ..logctx import log_fields
from ..models import ErrorKind, RoomState, VoiceRoom, VoiceSession
from ..sdp import MAX_SDP_CHARS, InvalidOffer, check_offer
from ..tokens import InvalidRoomToken, verify_room_token
from ..workers import worker_for
from .errors import ApiError, error_body, too_large
from .serializers import StrictSerializer

logger = logging.getLogger("voicesessions.webrtc")


class OfferSerializer(StrictSerializer):
    sdp = serializers.CharField(max_length=MAX_SDP_CHARS, trim_whitespace=False)
    type = serializers.ChoiceField(choices=["offer"])
    pc_id = serializers.CharField(required=False, allow_null=True, max_length=200)
    restart_pc = serializers.BooleanField(required=False, default=False)
    requestData = serializers.JSONField(required=False, allow_null=True)  # sent by Pipecat's JS client

    def validate_sdp(self, value: str) -> str:
        # Checked here, before the offer can touch the session's live peer connection.
        try:
            check_offer(value)
        except InvalidOffer as exc:
            raise serializers.ValidationError(f"Not a WebRTC audio offer: {exc}.") from exc
        return value


class CandidateSerializer(serializers.Serializer):
    candidate = serializers.CharField(allow_blank=True, max_length=2000)
    sdp_mid = serializers.CharField(required=False, allow_null=True, max_length=64)
    sdp_mline_index = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=64)


class PatchSerializer(StrictSerializer):
    pc_id = serializers.CharField(max_length=200)
    candidates = CandidateSerializer(many=True)


def _room_token(request: HttpRequest) -> tuple[str, str]:
    """The presented room token and the header it came in."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip(), "Authorization"
    if request.headers.get("X-Room-Token"):
        return request.headers["X-Room-Token"].strip(), "X-Room-Token"
    raise ApiError("not_authenticated", "Send the room token as 'Authorization: Bearer <token>'.",
                   status_code=401, fields={"Authorization": ["missing room token"]})


def _refused(field: str, reason: str) -> ApiError:
    return ApiError("invalid_token", f"Room token refused: {reason}.", status_code=401, fields={field: [reason]})


def _authorize(request: HttpRequest) -> tuple[VoiceRoom, bool]:
    """The room the token admits to, and whether the request is signed in as the token's user."""
    token, field = _room_token(request)
    try:
        claims = verify_room_token(token, None)
    except InvalidRoomToken as exc:
        if exc.expired:
            opsevents.record_error(ErrorKind.TOKEN_EXPIRY, detail="webrtc offer")
        raise _refused(field, str(exc)) from exc
    if not get_user_model().objects.filter(pk=claims.user_id, is_active=True).exists():
        raise _refused(field, "the user is inactive")
    room = VoiceRoom.objects.filter(name=claims.room_name, user_id=claims.user_id, state=RoomState.LIVE).first()
    if room is None:
        raise ApiError("room_not_ready", "The room is torn down; get it again with POST /api/voice/room.",
                       status_code=409)
    if claims.generation != room.generation:
        raise _refused(field, "revoked: the room was torn down after this token was issued")
    return room, _offer_is_from_owner(request, claims.user_id)


def _offer_is_from_owner(request: HttpRequest, user_id: str) -> bool:
    """Is the request signed in (session cookie or DRF token) as `user_id`?"""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        header = request.headers.get("Authorization", "")
        user = user_for_token(header[6:].strip()) if header.startswith("Token ") else None
    return bool(user is not None and user.is_authenticated and user.is_active and str(user.pk) == str(user_id))


def _session_and_worker(room: VoiceRoom) -> tuple[VoiceSession, Any]:
    session = room.sessions.live().first()
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


async def _relay(method: str, worker: Any, session: VoiceSession, body: dict[str, Any]) -> dict[str, Any]:
    """Signalling to the bot's worker (botclient), its failures as API errors."""
    try:
        return await relay_signalling(worker, method, session.pk, body)
    except BotUnreachable as exc:
        raise ApiError("bot_unavailable", f"The bot worker did not answer ({exc}).",
                       status_code=503, headers={"Retry-After": "2"}) from exc
    except BotRefused as exc:
        if exc.status == 404:
            raise ApiError("not_found", "The bot does not know this session or peer connection.",
                           status_code=404) from exc
        if exc.status == 409:
            raise ApiError("connection_in_use", "This room already has a live connection; only its signed-in "
                           "owner can replace it.", status_code=409) from exc
        raise ApiError("bot_error", f"The bot refused the request ({exc.status}).", status_code=502) from exc


def _error_response(exc: ApiError | ValidationError) -> JsonResponse:
    body = json.loads(json.dumps(error_body(exc), default=str))  # ErrorDetail strings -> plain JSON
    response = JsonResponse(body, status=exc.status_code)
    for name, value in getattr(exc, "extra_headers", {}).items():
        response[name] = value
    return response


def _json_body(request: HttpRequest) -> Any:
    try:
        return safejson.loads(request.body or b"null")
    except RequestDataTooBig as exc:
        raise too_large() from exc
    except safejson.JSONRejected as exc:
        raise ApiError("parse_error", str(exc), fields={"body": [str(exc)]}) from exc


@csrf_exempt  # authenticated by the room token, not by a cookie: CSRF does not apply
async def webrtc_offer(request: HttpRequest) -> HttpResponse:
    """POST: send the WebRTC offer, get the bot's answer. PATCH: trickle ICE candidates."""
    if request.method not in ("POST", "PATCH"):
        return JsonResponse({"error": "method_not_allowed", "detail": "Use POST or PATCH."}, status=405)
    try:
        room, owner = await sync_to_async(_authorize)(request)
        serializer = (OfferSerializer if request.method == "POST" else PatchSerializer)(data=_json_body(request))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        session, worker = await _wait_for_worker(room)
        if request.method == "PATCH":
            return JsonResponse(await _relay("PATCH", worker, session, json.loads(json.dumps(data))))
        started = time.monotonic()
        body = {"sdp": data["sdp"], "type": data["type"], "pc_id": data.get("pc_id"),
                "restart_pc": data.get("restart_pc", False), "owner": owner}
        while True:
            try:
                answer = await _relay("POST", worker, session, body)
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
