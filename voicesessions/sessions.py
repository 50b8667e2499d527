"""Voice session lifecycle: join a bot, pause, resume, end.

Every status change goes through `change_status`, which applies the model's
transition rules and records a `voice.session.status` event.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from assistants.models import AssistantRecord

from . import admission, opsevents
from .botclient import send_to_bot
from .events import record_event
from .logctx import log_fields
from .models import (LIVE_STATUSES, ErrorKind, IllegalTransition, OpsEventKind, SessionStatus, VoiceEventType, VoiceRoom,
                     VoiceSession)
from .queue import BotJobSpec, get_queue

logger = logging.getLogger("voicesessions.sessions")
# The user and the bot are talking (a pause keeps the conversation going).
CONVERSING = (SessionStatus.ACTIVE, SessionStatus.PAUSED)


class RoomNotReady(Exception):
    """The room is torn down or expired: get it again with POST /api/voice/room."""


class BotBusy(Exception):
    """The bot has not answered the user's previous typed message yet."""


@dataclass(frozen=True)
class JoinResult:
    session: VoiceSession
    job_id: str | None  # None when a bot is already on its way or in the room
    reused: bool


def change_status(session: VoiceSession, target: str, *, reason: str = "", **fields: Any) -> VoiceSession:
    """Apply a status change and record it as an event (raises IllegalTransition)."""
    previous = session.status
    session.transition_to(target, reason=reason, **fields)
    if (previous in CONVERSING and target not in CONVERSING and session.connected_at is not None):
        seconds = (timezone.now() - session.connected_at).total_seconds()
        opsevents.record(OpsEventKind.CONVERSATION, session.room.provider, value=seconds,
                         user=session.user_id, session=session)
    payload = {"status": target, "previous": previous, "reason": reason}
    if target == SessionStatus.ENDED:
        record_event(session, VoiceEventType.SESSION_END, {**payload, "endReason": session.end_reason})
    else:
        record_event(session, VoiceEventType.SESSION_STATUS, payload)
    logger.info("[VoiceSession] session=%s user=%s %s -> %s reason=%s",
                session.pk, session.user_id, previous, target, reason or "-",
                extra=log_fields(session=session, status=target, previous=previous))
    return session


def join_bot(user, room: VoiceRoom, *, assistant: AssistantRecord | None, params: dict[str, Any]) -> JoinResult:
    """Record a session for the room and queue a bot job (POST /api/bot/join).

    One bot per room: if a live session exists it is reused; an inactive one
    (user came back inside the window) goes back to connecting with a new job.
    """
    with transaction.atomic():
        room = VoiceRoom.objects.select_for_update().get(pk=room.pk)
        if not room.is_live():
            raise RoomNotReady(room.name)
        if room.teardown_at is not None:
            room.cancel_teardown()  # back inside the persistence window
        existing = room.sessions.live().first()
        if existing and existing.status != SessionStatus.INACTIVE:
            return JoinResult(existing, None, True)
        if existing and existing.bot_worker_id:
            # The bot still waits in its worker for the user's return: no new job.
            # (If that worker died, the sweeper marks the session unavailable.)
            change_status(existing, SessionStatus.CONNECTING, reason="rejoin", connect_by=connect_deadline())
            return JoinResult(existing, None, True)
        for stale in room.sessions.filter(status=SessionStatus.UNAVAILABLE):
            change_status(stale, SessionStatus.ENDED, reason="replaced")
        if existing:
            session = change_status(existing, SessionStatus.CONNECTING, reason="rejoin")
            reused = True
        else:
            try:
                with transaction.atomic():
                    session = VoiceSession.objects.create(
                        user=user, room=room, assistant=assistant, status=SessionStatus.CONNECTING,
                        **_session_fields(assistant, params))
            except IntegrityError:
                # A concurrent join won the room's one slot: answer with its session.
                session = room.sessions.live().get()
                return JoinResult(session, None, True)
            record_event(session, VoiceEventType.SESSION_START, {
                "status": session.status, "voiceOnly": session.voice_only,
                "sessionPersistence": session.session_persistence,
                "assistant": assistant.slug if assistant else None})
            reused = False
        admission.check_room()  # raises NoCapacity: the transaction, this session included, is undone
        job_id = get_queue().enqueue(_job_spec(session, room, assistant))
    logger.info("[BotJoin] session=%s room=%s job=%s voice_only=%s persistence=%ss reused=%s",
                session.pk, room.url, job_id, session.voice_only, session.session_persistence, reused,
                extra=log_fields(session=session, room_url=room.url, reused=reused, jobId=job_id))
    return JoinResult(session, job_id, reused)


def _session_fields(assistant: AssistantRecord | None, params: dict[str, Any]) -> dict[str, Any]:
    """JoinRequest fields, falling back to the assistant's own settings."""
    return {
        "voice_only": params.get("voiceOnly", False),
        "session_persistence": params.get("sessionPersistence",
                                          assistant.voice_persistence if assistant
                                          else settings.VOICE_DEFAULT_PERSISTENCE),
        "personality_id": params.get("personalityId") or (assistant.personality_id if assistant else ""),
        "persona": params.get("persona") or (assistant.persona if assistant else ""),
        "tenant_id": params.get("tenantId") or (assistant.tenant_id if assistant else ""),
        "voice": params.get("voice") or (assistant.voice if assistant else ""),
        "voice_parameters": params.get("voiceParameters") or (assistant.voice_parameters if assistant else {}),
        "max_duration": assistant.voice_max_duration if assistant else settings.VOICE_DEFAULT_MAX_DURATION,
    }


def _job_spec(session: VoiceSession, room: VoiceRoom, assistant: AssistantRecord | None) -> BotJobSpec:
    if assistant is None and session.personality_id:
        # No assistant named: the personalityId picks the assistant whose prompt the bot uses.
        assistant = AssistantRecord.objects.filter(personality_id=session.personality_id).first()
    return BotJobSpec(
        session_id=str(session.pk), user_id=str(session.user_id), room_name=room.name,
        room_url=room.url, provider=room.provider, voice_only=session.voice_only,
        session_persistence=session.session_persistence, max_duration=session.max_duration,
        personality_id=session.personality_id, persona=session.persona, tenant_id=session.tenant_id,
        voice=session.voice, voice_parameters=session.voice_parameters,
        language=assistant.language if assistant else "en",
        assistant=assistant.slug if assistant else "",
        system_prompt=assistant.system_prompt if assistant else "",
        behaviour=assistant.behaviour if assistant else {},
        models=assistant.models_spec if assistant else {},
        tools=[tool.job_spec() for tool in assistant.tools.filter(enabled=True)] if assistant else [],
        ends_at=session.ends_at.isoformat() if session.ends_at else "")


def pause(session: VoiceSession, *, by: str = "user") -> VoiceSession:
    """Mute the session, keep the connection: another call on the page (a DailyCall) has the microphone."""
    if session.status != SessionStatus.ACTIVE:
        raise IllegalTransition(session.status, SessionStatus.PAUSED)
    with transaction.atomic():
        change_status(session, SessionStatus.PAUSED, reason=by, pause_reason=by)
        send_to_bot(session.pk, "pause")
    return session


def resume(session: VoiceSession) -> VoiceSession:
    """Undo a pause. Only a paused session resumes: connecting goes active when the
    bot's audio connects, never because the user asked."""
    if session.status != SessionStatus.PAUSED:
        raise IllegalTransition(session.status, SessionStatus.ACTIVE)
    with transaction.atomic():
        change_status(session, SessionStatus.ACTIVE, reason="resume")
        send_to_bot(session.pk, "resume")
    return session


def live_sessions(user) -> list[VoiceSession]:
    return list(VoiceSession.objects.live().filter(user=user)
                .select_related("room", "assistant"))


def on_daily_call_start(user) -> list[VoiceSession]:
    """A DailyCall started in the browser: pause every active voice session."""
    paused = []
    for session in live_sessions(user):
        if session.status == SessionStatus.ACTIVE:
            paused.append(pause(session, by="dailyCall"))
    return paused


def on_daily_call_end(user) -> list[VoiceSession]:
    """The DailyCall ended: resume the sessions it paused (not the ones the user paused)."""
    resumed = []
    for session in live_sessions(user):
        if session.status == SessionStatus.PAUSED and session.pause_reason == "dailyCall":
            resumed.append(resume(session))
    return resumed


def send_user_message(session: VoiceSession, content: str) -> None:
    """Text from the browser to the bot's LLM context; logged as a user transcript.

    One typed message at a time: while the bot has not answered the last one
    (an assistant transcript or an error after it, within
    VOICE_TYPED_ANSWER_WAIT seconds), a new one raises BotBusy rather than
    piling up LLM runs in the worker.
    """
    if _typed_message_unanswered(session):
        raise BotBusy(str(session.pk))
    with transaction.atomic():
        record_event(session, VoiceEventType.TRANSCRIPT,
                     {"role": "user", "text": content, "final": True, "source": "text"})
        send_to_bot(session.pk, "user_message", content=content)


def _typed_message_unanswered(session: VoiceSession) -> bool:
    import datetime as dt

    since = timezone.now() - dt.timedelta(seconds=settings.VOICE_TYPED_ANSWER_WAIT)
    last_typed = (session.events.filter(type=VoiceEventType.TRANSCRIPT, created_at__gte=since,
                                        payload__source="text").order_by("-id").values_list("id", flat=True).first())
    if last_typed is None:
        return False
    answers = session.events.filter(id__gt=last_typed).filter(
        Q(type=VoiceEventType.TRANSCRIPT, payload__role="assistant", payload__final=True)
        | Q(type=VoiceEventType.ERROR))
    return not answers.exists()


# --- what the bot worker reports ------------------------------------------------

def _locked_session(session_id: Any) -> VoiceSession | None:
    """The session, read after locking its room.

    Room first, then session: the same order as user_left and join_bot, so
    a peer leaving while the user calls DELETE /api/voice/room cannot deadlock.
    Call inside a transaction.
    """
    room_id = VoiceSession.objects.filter(pk=session_id).values_list("room_id", flat=True).first()
    if room_id is None:
        return None
    VoiceRoom.objects.select_for_update().filter(pk=room_id).first()
    return VoiceSession.objects.select_related("room").filter(pk=session_id).first()


def mark_bot_connected(session_id: Any, worker_id: str) -> VoiceSession | None:
    """The user's media reached the bot (or the bot joined the Daily room): the session is active."""
    with transaction.atomic():
        session = _locked_session(session_id)
        if session is None:
            return None
        if session.status == SessionStatus.INACTIVE:  # the user came back inside the window
            change_status(session, SessionStatus.CONNECTING, reason="rejoin")
            session.room.cancel_teardown()
        if session.status == SessionStatus.CONNECTING:
            change_status(session, SessionStatus.ACTIVE, reason="bot_joined", bot_worker_id=worker_id)
    return session


def user_left(room_id: Any, *, session_id: Any = None, delay: int | None = None) -> int | None:
    """The one leave rule: the user went away, so their sessions go inactive and the room is
    torn down after a persistence window unless they come back.

    Called for DELETE /api/voice/room (no `session_id`; `delay` is the request's
    teardownDelay) and by the bot worker when the user's peer goes (`session_id`).
    The window is, first to apply: the explicit `delay`; the live session's
    sessionPersistence (what its JoinRequest asked, else its assistant's); the room's
    `persist_after_leave` (its assistant's, when no session is live).

    An explicit leave replaces a pending deadline. A peer going away keeps one (the
    user left through the API before the connection closed), and does nothing once
    its session is no longer live. Returns the window used, or None when nothing changed.
    """
    with transaction.atomic():
        room = VoiceRoom.objects.select_for_update().filter(pk=room_id).first()
        if room is None:
            return None
        present = room.sessions.live().exclude(status=SessionStatus.INACTIVE)
        if session_id is not None:
            present = present.filter(pk=session_id)
            if not present.exists():
                return None  # already inactive (the user left through the API) or over
        if delay is None:
            session = room.sessions.live().first()  # at most one (a unique index)
            delay = session.session_persistence if session is not None else room.persist_after_leave
        room.schedule_teardown(delay, unless_scheduled=session_id is not None)
        room.last_activity_at = timezone.now()
        room.save(update_fields=["last_activity_at"])
        for session in present.select_related("room"):
            change_status(session, SessionStatus.INACTIVE, reason="user_left")
    return delay


def peer_left(session_id: Any) -> int | None:
    """The bot worker saw the user's peer go: `user_left` for that session's room."""
    room_id = VoiceSession.objects.filter(pk=session_id).values_list("room_id", flat=True).first()
    return None if room_id is None else user_left(room_id, session_id=session_id)


def mark_unavailable(session_id: Any, code: str, message: str, *, kind: str = ErrorKind.BOT_JOIN,
                     stage: str = "") -> None:
    """The bot cannot serve the session (its join failed, it lost the room, a model provider
    refused it): the user is told with a `voice.error` (naming the failed `stage` if one did),
    and a new join replaces the session."""
    with transaction.atomic():
        session = _locked_session(session_id)
        if session is None or session.status not in LIVE_STATUSES:
            return
        change_status(session, SessionStatus.UNAVAILABLE, reason=code)
        record_event(session, VoiceEventType.ERROR,
                     {"code": code, "message": message, "fatal": True, **({"stage": stage} if stage else {})})
        opsevents.record_error(kind, detail=code, user=session.user_id, session=session)


def end_by_bot(session_id: Any, reason: str) -> bool:
    """The bot ended the conversation (its end-call tool or phrase, the user's silence): the
    session ends with `reason`, which the browser sees. False if it was no longer live."""
    with transaction.atomic():
        session = _locked_session(session_id)
        if session is None or session.status not in LIVE_STATUSES:
            return False
        change_status(session, SessionStatus.ENDED, reason=reason)
    return True


def claim_for_worker(session_id: Any, worker_id: str) -> VoiceSession | None:
    """A worker took the session's job: remember which, so signalling and control find it.

    From now on the bot holds one of the worker's slots: the user's audio must
    connect before `connect_by`, or the sweeper ends the session.
    """
    VoiceSession.objects.live().filter(pk=session_id).update(bot_worker_id=worker_id)
    VoiceSession.objects.filter(pk=session_id, status=SessionStatus.CONNECTING).update(connect_by=connect_deadline())
    return VoiceSession.objects.select_related("room").filter(pk=session_id).first()


def connect_deadline() -> Any:
    import datetime as dt

    return timezone.now() + dt.timedelta(seconds=settings.VOICE_CONNECT_TIMEOUT)


def end_unconnected(now: Any) -> int:
    """End sessions whose bot waited past `connect_by` for the user's audio; frees their slots."""
    ended = 0
    for session in VoiceSession.objects.filter(status=SessionStatus.CONNECTING, connect_by__lte=now
                                               ).select_related("room"):
        with transaction.atomic():
            try:
                change_status(session, SessionStatus.ENDED, reason="connect_timeout")
            except IllegalTransition:
                continue  # it connected (or ended) meanwhile
            record_event(session, VoiceEventType.ERROR, {
                "code": "connect_timeout", "fatal": True,
                "message": f"No audio connection within {settings.VOICE_CONNECT_TIMEOUT:g} s, so the assistant "
                           "left. Start voice again to reconnect."})
            opsevents.record_error(ErrorKind.BOT_JOIN, detail="connect_timeout", user=session.user_id,
                                   session=session)
            send_to_bot(session.pk, "leave", reason="connect_timeout")
        ended += 1
    if ended:
        logger.warning("[BotJoin] %d session(s) ended: the user's audio never connected", ended)
    return ended
