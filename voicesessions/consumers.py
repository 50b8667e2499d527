"""The browser's websocket, /ws/voice/.

Each signed-in user joins their own group and receives only their own
sessions' `voice.*` events. The client may send:
  {"type": "user-message", "content": "...", "sessionId": "..."?}
  {"type": "dailyCall.session.start"}  -> pause the active voice session
  {"type": "dailyCall.session.end"}    -> resume what the DailyCall paused
  {"type": "client.error", "kind": "audio"|"token_expiry", "code": "...", "detail": "..."}
      -> a failure only the browser can see (microphone denied, ICE failed,
         Daily token expired), counted in /metrics and the dashboard
A reconnecting client passes ?after=<last event id> to replay what it missed.

Every frame is checked before it is acted on: text only, at most
MAX_FRAME_CHARS, JSON no deeper than safejson allows, and at most
VOICE_WS_RATE messages a second per socket (VOICE_WS_BURST at once) and
VOICE_WS_USER_PER_MINUTE per user across sockets. What fails a check is
answered with a `voice.error` naming why; the socket stays open.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from . import opsevents, relay, safejson, sessions
from .events import user_group
from .models import ErrorKind, SessionEvent, SessionStatus, VoiceSession
from .ratelimit import TokenBucket, user_window_exceeded

logger = logging.getLogger("voicesessions.consumers")

MAX_MESSAGE_CHARS = 4000
MAX_FRAME_CHARS = 32_768  # a 4,000-character message fits even fully \u-escaped
REPLAY_LIMIT = 500
CLIENT_ERROR_KINDS = (ErrorKind.AUDIO, ErrorKind.TOKEN_EXPIRY)
MAX_CLIENT_ERRORS = 20  # per socket: a misbehaving page must not flood the error counts


CLOSE_TRY_ELSEWHERE = 4013  # the socket's close code when this server cannot reach the database


class VoiceConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    replayed_up_to: int = 0  # live events already sent by the ?after= replay are skipped
    client_errors: int = 0
    refresher: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # before accept: the handshake is refused
            return
        self.user = user
        self.bucket = TokenBucket(settings.VOICE_WS_RATE, settings.VOICE_WS_BURST)
        self.group = user_group(user.pk)
        relay.ensure_started()
        await self._join_group()
        await self.accept()
        after = self._after_param()
        self.sent_ids: set[int] = set()
        self.start_id = after if after is not None else await self._latest_event_id()
        # lastEventId: the cursor to reconnect with (?after=) even before any event arrived
        await self.send_json({"type": "voice.connected", "userId": str(user.pk), "lastEventId": self.start_id,
                              "sessions": await self._live_sessions()})
        if after is not None:
            for message in await self._events_after(after):
                await self.send_json(message)
                self.replayed_up_to = message["id"]
        if not relay.relay_enabled():
            self.refresher = asyncio.ensure_future(self._refresh_loop())

    async def disconnect(self, code: int) -> None:
        if self.refresher:
            self.refresher.cancel()
        if self.group:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except Exception:  # the layer is down; the group entry expires by itself
                pass

    async def _join_group(self) -> None:
        """Join the user's group (at connect, and again on every refresh: idempotent). With the layer
        out of reach the socket opens all the same: the events wait in the database and the next
        refresh joins again (a 500 at the handshake would leave the page without its events)."""
        try:
            await asyncio.wait_for(self.channel_layer.group_add(self.group, self.channel_name), timeout=2)
        except Exception as exc:  # noqa: BLE001 - any layer failure: the database still has the events
            logger.warning("[VoiceSession] user=%s: channel layer unreachable (%s); events wait in the database",
                           self.user.pk, type(exc).__name__)

    async def _refresh_loop(self) -> None:
        """Survive a channel-layer restart without the client noticing.

        Redis keeps no state across a restart here, so this socket's group
        membership may vanish, and events pushed while Redis was down were
        never delivered. Every few seconds: join the group again (idempotent)
        and send the stored events of the last minute this socket has not sent.
        """
        while True:
            await asyncio.sleep(settings.VOICE_WS_REFRESH_SECONDS)
            try:  # the database first: it does not depend on the layer being healthy
                for message in await self._recent_events():
                    await self._send_event(message)
            except Exception:
                logger.exception("[VoiceSession] catch-up failed")
                # This server cannot reach the database (a partition, say): the socket would stay
                # open and silent. Closed at the first failed catch-up, the client reconnects
                # (through the load balancer, to a server that can) with ?after= and loses nothing.
                logger.warning("[VoiceSession] user=%s: the database is unreachable from this server; "
                               "closing the socket so the client reconnects elsewhere", self.user.pk)
                # 4013: "try again later" in the application's range. Daphne's autobahn refuses
                # 1013 itself (only 1000 or 3000-4999 may be sent), which left the socket open.
                await self.close(code=CLOSE_TRY_ELSEWHERE)
                return
            await self._join_group()

    # --- from the channel layer -------------------------------------------
    async def voice_event(self, message: dict[str, Any]) -> None:
        """One event (the relay's, and a server of the release before voice.events)."""
        await self._send_event(message["event"])

    async def voice_events(self, message: dict[str, Any]) -> None:
        """A batch of one session's events, in order (events.record_events)."""
        for event in message["events"]:
            await self._send_event(event)

    async def _send_event(self, event: dict[str, Any]) -> None:
        if event["id"] > self.replayed_up_to and event["id"] not in self.sent_ids:
            self.sent_ids.add(event["id"])
            if len(self.sent_ids) > 5000:  # keep the recent ids only
                self.sent_ids = set(sorted(self.sent_ids)[-2500:])
            await self.send_json(event)

    # --- from the browser -------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Check size, rate and JSON before anything else reads the frame."""
        wait = self.bucket.take()
        if wait or user_window_exceeded("message", self.user.pk, settings.VOICE_WS_USER_PER_MINUTE):
            await self._error("rate_limited", "type", "too many messages; slow down and try again",
                              retryAfter=round(max(wait, 1.0), 1))
            return
        if text_data is None:
            await self._error("invalid_message", "frame", "send JSON text frames, not binary ones")
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self._error("too_large", "frame", f"a message may be at most {MAX_FRAME_CHARS} characters")
            return
        try:
            content = safejson.loads(text_data)
        except safejson.JSONRejected as exc:
            await self._error("invalid_message", "frame", str(exc))
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "user-message": self._user_message,
            "dailyCall.session.start": self._daily_call_start,
            "dailyCall.session.end": self._daily_call_end,
            "client.error": self._client_error,
        }.get(kind)  # type: ignore[arg-type]
        if handler is None:
            await self._error("invalid_message", "type", "type must be user-message, dailyCall.session.start, "
                              "dailyCall.session.end or client.error")
            return
        await handler(content)

    async def _user_message(self, content: dict[str, Any]) -> None:
        text = content.get("content")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_CHARS:
            await self._error("invalid_message", "content",
                              f"content must be non-empty text of at most {MAX_MESSAGE_CHARS} characters")
            return
        try:
            ok = await self._send_user_message(content.get("sessionId"), text.strip())
        except sessions.BotBusy:
            await self._error("bot_busy", "content", "the assistant is still answering your last message; "
                              "send this one when it has answered")
            return
        if not ok:
            await self._error("no_active_session", "sessionId", "no active voice session to send to")

    async def _daily_call_start(self, content: dict[str, Any]) -> None:
        paused = await database_sync_to_async(sessions.on_daily_call_start)(self.user)
        logger.info("[VoiceSession] dailyCall started user=%s paused=%d", self.user.pk, len(paused))

    async def _daily_call_end(self, content: dict[str, Any]) -> None:
        resumed = await database_sync_to_async(sessions.on_daily_call_end)(self.user)
        logger.info("[VoiceSession] dailyCall ended user=%s resumed=%d", self.user.pk, len(resumed))

    async def _client_error(self, content: dict[str, Any]) -> None:
        kind, code, detail = content.get("kind"), content.get("code", ""), content.get("detail", "")
        if kind not in CLIENT_ERROR_KINDS:
            await self._error("invalid_message", "kind", f"kind must be one of {', '.join(CLIENT_ERROR_KINDS)}")
            return
        if not isinstance(code, str) or not isinstance(detail, str):
            await self._error("invalid_message", "code", "code and detail must be text")
            return
        self.client_errors += 1
        if self.client_errors > MAX_CLIENT_ERRORS:
            return
        await database_sync_to_async(self._record_client_error)(kind, code[:40], detail)
        logger.warning("[VoiceSession] client error user=%s kind=%s code=%s", self.user.pk, kind, code[:40])

    def _record_client_error(self, kind: str, code: str, detail: str) -> None:
        session = VoiceSession.objects.live().filter(user=self.user).first()
        opsevents.record_error(kind, detail=f"{code}: {detail}"[:200], user=self.user, session=session)

    async def _error(self, code: str, field: str, detail: str, **extra: Any) -> None:
        await self.send_json({"type": "voice.error",
                              "payload": {"code": code, "field": field, "detail": detail, **extra}})

    # --- database helpers ---------------------------------------------------
    def _after_param(self) -> int | None:
        values = parse_qs(self.scope.get("query_string", b"").decode()).get("after")
        try:
            return int(values[0]) if values else None
        except ValueError:
            return None

    @database_sync_to_async
    def _live_sessions(self) -> list[dict[str, Any]]:
        return [{"sessionId": str(s.pk), "status": s.status, "roomUrl": s.room.url}
                for s in sessions.live_sessions(self.user)]

    @database_sync_to_async
    def _latest_event_id(self) -> int:
        return SessionEvent.objects.filter(user=self.user).order_by("-id").values_list("id", flat=True).first() or 0

    @database_sync_to_async
    def _recent_events(self) -> list[dict[str, Any]]:
        since = timezone.now() - dt.timedelta(seconds=60)
        events = SessionEvent.objects.for_user(self.user).after(self.start_id).filter(created_at__gte=since)
        return [e.as_message() for e in events[:REPLAY_LIMIT]]

    @database_sync_to_async
    def _events_after(self, after: int) -> list[dict[str, Any]]:
        events = SessionEvent.objects.for_user(self.user).after(after)[:REPLAY_LIMIT]
        return [e.as_message() for e in events.select_related("session")]

    @database_sync_to_async
    def _send_user_message(self, session_id: Any, text: str) -> bool:
        qs = VoiceSession.objects.filter(user=self.user, status=SessionStatus.ACTIVE).select_related("room")
        if session_id is not None:
            try:
                qs = qs.filter(pk=uuid.UUID(str(session_id)))
            except ValueError:
                return False
        session = qs.first()
        if session is None:
            return False
        sessions.send_user_message(session, text)
        return True
