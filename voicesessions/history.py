"""A session's history: its transcript, its timeline of events, and a JSON export.

Shared by the admin (session pages and the export action) and anything else
that wants a session as one JSON document.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .models import OpsEvent, OpsEventKind, SessionEvent, VoiceEventType, VoiceSession

# Audio levels arrive several times a second; the timeline and export leave them out.
TIMELINE_EXCLUDES = (VoiceEventType.AUDIO_LEVEL,)


def timeline(session: VoiceSession) -> Iterable[SessionEvent]:
    return session.events.exclude(type__in=TIMELINE_EXCLUDES).order_by("id")


def transcript(session: VoiceSession) -> list[dict[str, Any]]:
    """The conversation as final lines: who said what, when."""
    lines = []
    for event in session.events.filter(type=VoiceEventType.TRANSCRIPT).order_by("id"):
        payload = event.payload or {}
        if payload.get("final") and payload.get("text"):
            lines.append({"at": event.created_at, "role": payload.get("role", "user"), "text": payload["text"],
                          "interrupted": bool(payload.get("interrupted", False))})
    return lines


def errors(session: VoiceSession) -> list[dict[str, Any]]:
    return [{"at": e.created_at, "kind": e.label, "detail": e.detail}
            for e in OpsEvent.objects.filter(session=session, kind=OpsEventKind.ERROR).order_by("id")]


def session_record(session: VoiceSession) -> dict[str, Any]:
    """One session as a JSON-ready document (the export format)."""
    return {
        "sessionId": str(session.pk),
        "userId": str(session.user_id),
        "username": session.user.get_username(),
        "assistant": session.assistant.slug if session.assistant else None,
        "roomName": session.room.name,
        "roomUrl": session.room.url,
        "provider": session.room.provider,
        "status": session.status,
        "endReason": session.end_reason,
        "voiceOnly": session.voice_only,
        "sessionPersistence": session.session_persistence,
        "personalityId": session.personality_id,
        "persona": session.persona,
        "tenantId": session.tenant_id,
        "voice": session.voice,
        "voiceParameters": session.voice_parameters,
        "maxDuration": session.max_duration,
        "createdAt": session.created_at,
        "startedAt": session.started_at,
        "endedAt": session.ended_at,
        "botWorker": session.bot_worker_id,
        "transcript": transcript(session),
        "errors": errors(session),
        "events": [event.as_message() for event in timeline(session)],
    }


def export_json(sessions: Iterable[VoiceSession]) -> Iterator[str]:
    """A JSON array of session records, produced piece by piece so big exports stream."""
    yield "["
    for index, session in enumerate(sessions):
        yield ("," if index else "") + "\n" + json.dumps(session_record(session), cls=DjangoJSONEncoder)
    yield "\n]\n"
