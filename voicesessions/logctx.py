"""The fields every voice log line carries when known (user, room, session, latency), as
`extra=` for a log call.

    logger.info("[VoiceSession] ...", extra=log_fields(session=s, latency_ms=12.5))

Plain-text logs ignore them (the message already says the same); JSON logs
(LOG_FORMAT=json) carry them as userId, roomUrl, sessionId and latencyMs.
"""
from __future__ import annotations

from typing import Any


def log_fields(*, session: Any = None, user_id: Any = None, room_url: str | None = None,
               session_id: Any = None, latency_ms: float | None = None, **more: Any) -> dict[str, Any]:
    if session is not None:
        session_id = session_id or session.pk
        user_id = user_id or session.user_id
        if room_url is None and type(session).room.is_cached(session):  # never a query just to log
            room_url = session.room.url
    fields = {"sessionId": str(session_id) if session_id else None,
              "userId": str(user_id) if user_id is not None else None,
              "roomUrl": room_url, "latencyMs": round(latency_ms, 1) if latency_ms is not None else None, **more}
    return {key: value for key, value in fields.items() if value is not None}
