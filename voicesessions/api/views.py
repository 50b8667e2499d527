"""REST endpoints. Thin: parse, call a service, shape the answer."""
from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.models import AssistantRecord
from assistants.rollout import decide

from .. import capabilities, opsevents, rooms, sessions
from ..admission import NoCapacity
from ..models import OpsEventKind, VoiceSession
from .errors import ApiError, field_error
from .serializers import (ErrorSerializer, EventListQuerySerializer, JoinRequestSerializer, JoinResponseSerializer,
                          LeaveRequestSerializer, LeaveResponseSerializer, RoomRequestSerializer,
                          RoomResponseSerializer, SessionEventSerializer, VoiceSessionSerializer)
from .throttles import VoiceScopedRateThrottle


def _error(description: str) -> OpenApiResponse:
    """A documented error answer: every one has the shape errors.py builds (ErrorSerializer)."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


ERRORS = {400: _error("Invalid input; `fields` names the field."), 401: _error("Not signed in.")}
THROTTLED = {429: _error("Too many requests; wait the seconds in Retry-After.")}
NOT_FOUND = {404: _error("Not found among yours (another user's session or room is a 404 too).")}
# DRF answers 415 to a body whose Content-Type none of its parsers (JSON, form, multipart) reads.
UNSUPPORTED_MEDIA = {415: _error("The body's Content-Type is not JSON, form or multipart.")}
VOICE_NOT_ENABLED = {403: _error("Voice sessions are not enabled for the named assistant.")}
PROVIDER_FAILED = {502: _error("The room provider (Daily) refused the request."),
                   503: _error("The room provider or the database is unavailable; see Retry-After.")}


def _validated(serializer_class: type, data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _assistant_for_voice(slug: str | None) -> AssistantRecord | None:
    """The named assistant, which must exist and be in the voice rollout."""
    if not slug:
        return None
    assistant = AssistantRecord.objects.filter(slug=slug).first()
    if assistant is None:
        raise field_error("assistant", f"No assistant '{slug}'.")
    decision = decide(assistant)
    if not decision.enabled:
        raise ApiError("voice_not_enabled", f"Voice sessions are not enabled for '{slug}' ({decision.reason}).",
                       status_code=403, fields={"assistant": [decision.reason]})
    return assistant


class VoiceRoomView(APIView):
    """The signed-in user's private voice room (`voice-{userId}`)."""

    throttle_classes = [VoiceScopedRateThrottle]
    throttle_scope = "voice_room"

    def get_throttles(self) -> list:
        # Leaving always works: a user held back from asking for rooms must still be able to leave one.
        return [] if self.request.method == "DELETE" else super().get_throttles()

    @extend_schema(request=RoomRequestSerializer,
                   responses={200: RoomResponseSerializer, **ERRORS, **VOICE_NOT_ENABLED, **UNSUPPORTED_MEDIA,
                              **THROTTLED, **PROVIDER_FAILED},
                   summary="Get or create your voice room and a token to join it")
    def post(self, request: Request) -> Response:
        data = _validated(RoomRequestSerializer, request.data)
        grant = rooms.get_or_create_room(request.user, assistant=_assistant_for_voice(data.get("assistant")))
        room = grant.room
        return Response(RoomResponseSerializer({
            "roomUrl": room.url, "roomName": room.name, "provider": room.provider, "token": grant.token,
            "tokenExpiresAt": grant.token_expires_at, "reused": grant.reused, "expiresAt": room.expires_at,
            "privacy": room.privacy, "maxParticipants": room.max_participants,
            "persistAfterLeave": room.persist_after_leave}).data)

    @extend_schema(request=LeaveRequestSerializer,
                   responses={200: LeaveResponseSerializer, **ERRORS, **NOT_FOUND, **UNSUPPORTED_MEDIA},
                   summary="Leave your room; it is torn down after teardownDelay seconds")
    def delete(self, request: Request) -> Response:
        data = _validated(LeaveRequestSerializer, request.data)
        room, delay = rooms.leave_room(request.user, room_url=data.get("roomUrl"),
                                       teardown_delay=data.get("teardownDelay"))
        return Response(LeaveResponseSerializer({
            "success": True, "roomUrl": room.url, "teardownDelay": delay,
            "teardownAt": room.teardown_at, "state": room.state}).data)


class BotJoinView(APIView):
    """POST /api/bot/join: record a session and queue a bot for the room."""

    throttle_classes = [VoiceScopedRateThrottle]
    throttle_scope = "bot_join"

    @extend_schema(request=JoinRequestSerializer,
                   responses={202: JoinResponseSerializer, 200: JoinResponseSerializer, **ERRORS,
                              403: _error("sessionUserId is not you, or voice is not enabled for the assistant."),
                              **NOT_FOUND, 409: _error("Your room is torn down or expired: POST /api/voice/room."),
                              422: _error("No voice worker can run the assistant's models, or `voice` is not "
                                          "a voice id of its voice provider (`provider_unavailable`)."),
                              503: _error("Every voice worker is busy (`no_capacity`): try again after "
                                          "Retry-After seconds."),
                              **UNSUPPORTED_MEDIA, **THROTTLED},
                   summary="Ask a bot to join your room")
    def post(self, request: Request) -> Response:
        data = _validated(JoinRequestSerializer, request.data)
        if "sessionUserId" in data and data["sessionUserId"] != str(request.user.pk):
            raise field_error("sessionUserId", "You can only start sessions for yourself.",
                              code="forbidden", status_code=403)
        room = rooms.user_room(request.user, data.get("room_url"))
        assistant = _assistant_for_voice(data.get("assistant"))
        problem = capabilities.unservable(assistant, voice=data.get("voice", ""))
        if problem is not None:
            raise ApiError("provider_unavailable", problem.message, status_code=422,
                           fields={problem.field: [problem.message]})
        try:
            result = sessions.join_bot(request.user, room, assistant=assistant, params=data)
        except NoCapacity as full:
            # Counted after the join's transaction is undone (voice_joins_refused_total).
            opsevents.record(OpsEventKind.JOIN_REFUSED, "no_capacity", user=request.user.pk)
            raise ApiError("no_capacity", str(full), status_code=503,
                           headers={"Retry-After": str(full.retry_after)}) from None
        body = JoinResponseSerializer({
            "sessionId": result.session.pk, "status": result.session.status, "roomUrl": room.url,
            "jobId": result.job_id, "reused": result.reused, "queued": result.job_id is not None}).data
        return Response(body, status=status.HTTP_202_ACCEPTED if result.job_id else status.HTTP_200_OK)


def _own_session(request: Request, session_id: Any) -> VoiceSession:
    # Another user's session is a 404, not a 403: its existence is not theirs to learn.
    return get_object_or_404(VoiceSession.objects.select_related("room", "assistant"),
                             pk=session_id, user=request.user)


class SessionListView(APIView):
    @extend_schema(responses={200: VoiceSessionSerializer(many=True), **ERRORS},
                   summary="Your 50 most recent voice sessions")
    def get(self, request: Request) -> Response:
        qs = VoiceSession.objects.filter(user=request.user).select_related("room", "assistant")[:50]
        return Response(VoiceSessionSerializer(qs, many=True).data)


class SessionDetailView(APIView):
    @extend_schema(responses={200: VoiceSessionSerializer, **ERRORS, **NOT_FOUND}, summary="One of your voice sessions")
    def get(self, request: Request, session_id: Any) -> Response:
        return Response(VoiceSessionSerializer(_own_session(request, session_id)).data)


class SessionEventsView(APIView):
    @extend_schema(parameters=[EventListQuerySerializer],
                   responses={200: SessionEventSerializer(many=True), **ERRORS, **NOT_FOUND},
                   summary="A session's events, oldest first")
    def get(self, request: Request, session_id: Any) -> Response:
        query = _validated(EventListQuerySerializer, request.query_params.dict())
        events = _own_session(request, session_id).events.all()
        if "after" in query:
            events = events.after(query["after"])
        return Response(SessionEventSerializer(events[: query["limit"]], many=True).data)


class SessionPauseView(APIView):
    @extend_schema(request=None, responses={200: VoiceSessionSerializer, 409: _error("The session is not active."),
                                            **ERRORS, **NOT_FOUND}, summary="Pause (mute, keep the connection)")
    def post(self, request: Request, session_id: Any) -> Response:
        return Response(VoiceSessionSerializer(sessions.pause(_own_session(request, session_id))).data)


class SessionResumeView(APIView):
    @extend_schema(request=None, responses={200: VoiceSessionSerializer, 409: _error("The session is not paused."),
                                            **ERRORS, **NOT_FOUND}, summary="Resume a paused session")
    def post(self, request: Request, session_id: Any) -> Response:
        return Response(VoiceSessionSerializer(sessions.resume(_own_session(request, session_id))).data)
