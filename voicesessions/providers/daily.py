"""Daily.co room provider: rooms and meeting tokens through Daily's REST API.

Every rule below comes from Daily's documentation (pages as stored on
docs.daily.co; the OpenAPI spec is docs.daily.co/openapi.json):

- Base URL ``https://api.daily.co/v1`` and ``Authorization: Bearer <API key>``
  on every call -- reference/rest-api (Authentication) and the spec's
  ``servers``/``bearerAuth``.
- ``GET /rooms/:name`` answers the room object ``{id, name, api_created,
  privacy, url, created_at, config{...}}``; ``config`` holds only the
  properties that differ from Daily's defaults -- reference/rest-api/rooms/
  get-room and create-room. So a room without ``config.max_participants`` has
  Daily's default of 200, not our 2.
- ``POST /rooms`` takes exactly three optional body fields, ``name``,
  ``privacy`` ("public" | "private") and ``properties`` (additionalProperties:
  false) -- reference/rest-api/rooms/create-room.
- Room properties: ``exp``/``nbf`` are integer unix timestamps in seconds;
  ``max_participants`` integer (default 200); ``enable_knocking``,
  ``enable_prejoin_ui``, ``enable_network_ui``, ``enable_screenshare``,
  ``enable_chat`` and ``start_video_off`` booleans; ``enable_recording`` is a
  string enum ("cloud", "cloud-audio-only", "local", "raw-tracks") or an array
  of them, never a boolean, so "recording off" means leaving it out --
  create-room and the spec's ``room-properties`` schema.
- ``DELETE /rooms/:name`` answers ``{"deleted": true, "name": ...}``; an unknown
  room, and a room whose ``exp`` has passed, answer 404 --
  reference/rest-api/rooms/delete-room.
- ``POST /meeting-tokens`` takes ``{"properties": {room_name, user_id (max 36
  chars), user_name, exp, is_owner, start_video_off, ...}}`` and answers
  ``{"token": "<JWT>"}`` -- reference/rest-api/meeting-tokens/
  create-meeting-token.
- Errors are ``{"error": "<stable type>", "info": "<human text>"}``: 400
  ``invalid-request-error`` (bad or missing parameters; a duplicate room name
  is one too: its ``info`` reads "a room named X already exists"), 400
  ``authorization-header-error`` (header missing or malformed), 401
  ``authentication-error`` (bad key), 403 ``forbidden-error``, 404
  ``not-found``, 429 ``rate-limit-error``, 5xx ``server-error`` --
  docs/rest-api/errors and reference/rest-api (Authentication).
- 429s should be retried with exponential backoff -- reference/rest-api (Rate
  limits). Daily does not document a ``Retry-After`` header; we honour one if it
  is ever sent.

Not confirmed in Daily's docs: the exact wording of the duplicate-name
``info`` (taken from a client that measured it), and ``Retry-After``.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import quote

import httpx

from .base import ProviderRoom, RoomProvider, RoomProviderError

logger = logging.getLogger("voicesessions.daily")

DEFAULT_API_URL = "https://api.daily.co/v1"
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 10.0
DAILY_DEFAULT_MAX_PARTICIPANTS = 200  # what an absent config.max_participants means
BACKOFF_START = 0.5
BACKOFF_CAP = 8.0


def _setting(name: str, default: Any) -> Any:
    """Read a Django setting, falling back when it (or Django settings) is missing."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:  # no settings module, e.g. a bare script or -p no:django
        return default


def backoff_delay(attempt: int) -> float:
    """Exponential backoff for retry number `attempt` (0-based): 0.5, 1, 2, 4, 8, 8..."""
    return min(BACKOFF_START * (2 ** attempt), BACKOFF_CAP)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """Daily's (error, info) pair from an error answer; empty strings if absent."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("info") or "")


class DailyRoomProvider(RoomProvider):
    """Rooms on Daily.co, one REST call per operation, with retries for 429/5xx."""

    name = "daily"

    def __init__(self, *, api_key: str | None = None, api_url: str | None = None,
                 client: httpx.Client | None = None, max_retries: int | None = None,
                 timeout: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._api_key = api_key if api_key is not None else _setting("DAILY_API_KEY", "")
        self._api_url = (api_url or _setting("DAILY_API_URL", DEFAULT_API_URL)).rstrip("/")
        self.max_retries = int(max_retries if max_retries is not None
                               else _setting("DAILY_MAX_RETRIES", DEFAULT_MAX_RETRIES))
        timeout = float(timeout if timeout is not None
                        else _setting("DAILY_HTTP_TIMEOUT", DEFAULT_TIMEOUT))
        # A shared client keeps the TLS connection to Daily alive between calls.
        self._client = client or httpx.Client(timeout=timeout)
        self._sleep = sleep

    # -- RoomProvider -----------------------------------------------------

    def get_room(self, room_name: str) -> ProviderRoom | None:
        """GET /rooms/:name; None when Daily has no such (or an expired) room."""
        response = self._call("GET", self._room_path(room_name), allow={404})
        if response.status_code == 404:
            return None
        return self._to_room(response.json())

    def create_room(self, room_name: str, *, privacy: str, expires_at: dt.datetime,
                    max_participants: int = 2) -> ProviderRoom:
        """POST /rooms with the voice-room properties below; reuse the room if it exists."""
        body = {"name": room_name, "privacy": privacy,
                "properties": self.room_properties(expires_at, max_participants)}
        response = self._call("POST", "/rooms", json=body, allow={400})
        if response.status_code == 400:
            error, info = _error_fields(response)
            if error != "invalid-request-error" or "already exists" not in info:
                raise self._error_for(response, "POST", "/rooms")
            # A retried POST or a concurrent request made it first: same room, use it.
            logger.info("[DailyRoom] room %s already exists; fetching it", room_name)
            existing = self.get_room(room_name)
            if existing is None:
                raise RoomProviderError(
                    f"[DailyRoom] room {room_name} reported as existing but not found",
                    kind="unavailable", status=400)
            return existing
        room = self._to_room(response.json())
        logger.info("[DailyRoom] created room %s exp=%s max_participants=%s",
                    room.name, body["properties"]["exp"], max_participants)
        return room

    def delete_room(self, room_name: str) -> None:
        """DELETE /rooms/:name; a room that is already gone (404) is fine."""
        response = self._call("DELETE", self._room_path(room_name), allow={404})
        if response.status_code == 404:
            logger.info("[DailyRoom] room %s already gone", room_name)
        else:
            logger.info("[DailyRoom] deleted room %s", room_name)

    def eject(self, room_name: str, *, user_ids: list[str]) -> list[str]:
        """POST /rooms/:name/eject by the meeting tokens' user_id; users not in the meeting are no error."""
        response = self._call("POST", f"{self._room_path(room_name)}/eject", json={"user_ids": user_ids[:100]},
                              allow={404})
        if response.status_code == 404:  # no such room (any more): nobody to eject
            return []
        ejected = response.json().get("ejectedIds") or []
        logger.info("[DailyRoom] ejected %d stale participant(s) from %s", len(ejected), room_name)
        return list(ejected)

    def issue_token(self, room_name: str, *, user_id: str, user_name: str,
                    expires_at: dt.datetime, is_owner: bool = False, generation: int = 1) -> str:
        """POST /meeting-tokens scoped to this room and user until expires_at.

        `eject_at_token_exp`: Daily ends the participant's call when the token
        expires (without it an expired token only stops new joins). The token
        cannot be revoked, so `generation` is not used here.
        """
        body = {"properties": {
            "room_name": room_name,
            "user_id": user_id,
            "user_name": user_name,
            "exp": int(expires_at.timestamp()),
            "is_owner": is_owner,
            "start_video_off": True,
            "eject_at_token_exp": True,
        }}
        response = self._call("POST", "/meeting-tokens", json=body)
        token = response.json().get("token")
        if not isinstance(token, str) or not token:
            raise RoomProviderError("[DailyRoom] POST /meeting-tokens answered without a token",
                                    kind="unavailable", status=response.status_code)
        # The token itself is a credential: log who it is for, never the token.
        logger.info("[DailyRoom] issued token room=%s user=%s exp=%s owner=%s",
                    room_name, user_id, body["properties"]["exp"], is_owner)
        return token

    # -- request body -----------------------------------------------------

    @staticmethod
    def room_properties(expires_at: dt.datetime, max_participants: int) -> dict[str, Any]:
        """A room that expires and caps its participants, with no knocking, pre-join or network
        UI, screen share or chat, and cameras off at start. Recording stays off by leaving
        enable_recording out; privacy is set beside these (private: tokens only)."""
        return {
            "exp": int(expires_at.timestamp()),
            "max_participants": max_participants,
            "enable_knocking": False,
            "enable_prejoin_ui": False,
            "enable_network_ui": False,
            "enable_screenshare": False,
            "enable_chat": False,
            "start_video_off": True,
        }

    # -- HTTP ---------------------------------------------------------------

    @staticmethod
    def _room_path(room_name: str) -> str:
        return f"/rooms/{quote(room_name, safe='')}"

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            raise RoomProviderError("[DailyRoom] DAILY_API_KEY is not set", kind="config")
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def _call(self, method: str, path: str, *, json: dict[str, Any] | None = None,
              allow: Collection[int] = ()) -> httpx.Response:
        """Send one request with retries; return 2xx or an `allow`ed status, else raise."""
        headers = self._headers()
        url = f"{self._api_url}{path}"
        for attempt in range(self.max_retries + 1):
            last_try = attempt == self.max_retries
            started = time.monotonic()
            try:
                response = self._client.request(method, url, json=json, headers=headers)
            except httpx.TransportError as exc:
                self._log_call(method, path, type(exc).__name__, started, logging.WARNING)
                if last_try:
                    raise RoomProviderError(
                        f"[DailyRoom] {method} {path} failed: {type(exc).__name__}",
                        kind="unavailable") from exc
                self._sleep(backoff_delay(attempt))
                continue
            status = response.status_code
            retryable = status == 429 or status >= 500
            failed = retryable or (status >= 400 and status not in allow)
            self._log_call(method, path, status, started,
                           logging.WARNING if failed else logging.INFO)
            if not retryable:
                if response.is_success or status in allow:
                    return response
                raise self._error_for(response, method, path)
            wait = parse_retry_after(response.headers.get("Retry-After"))
            delay = wait if wait is not None else backoff_delay(attempt)
            # Never park a web request for longer than the backoff cap: give up and
            # let the caller pass retry_after on instead.
            if last_try or delay > BACKOFF_CAP:
                raise self._error_for(response, method, path, retry_after=delay)
            self._sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _log_call(self, method: str, path: str, status: int | str, started: float,
                  level: int) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.log(level, "[DailyRoom] %s %s -> %s in %.1fms", method, path, status, elapsed_ms)

    def _error_for(self, response: httpx.Response, method: str, path: str, *,
                   retry_after: float | None = None) -> RoomProviderError:
        """Map a failed answer to RoomProviderError with the right `kind`."""
        status = response.status_code
        error, info = _error_fields(response)
        detail = self._redact(f"{error}: {info}" if info else error or response.reason_phrase)
        message = f"[DailyRoom] {method} {path} -> {status} {detail}"
        if status in (401, 403) or error == "authorization-header-error":
            kind = "auth"
        elif status == 404:
            kind = "not_found"
        elif status == 429:
            kind = "rate_limited"
        elif status >= 500:
            kind = "unavailable"
        else:
            kind = "invalid"
        return RoomProviderError(message, kind=kind, status=status, retry_after=retry_after)

    def _redact(self, text: str) -> str:
        """Blank the API key should Daily ever echo it back."""
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- parsing --------------------------------------------------------------

    @staticmethod
    def _to_room(data: dict[str, Any]) -> ProviderRoom:
        config = data.get("config") or {}
        exp = config.get("exp")
        return ProviderRoom(
            name=data["name"],
            url=data["url"],
            privacy=data.get("privacy", "public"),
            expires_at=dt.datetime.fromtimestamp(exp, tz=dt.timezone.utc) if exp else None,
            max_participants=config.get("max_participants", DAILY_DEFAULT_MAX_PARTICIPANTS),
            raw=data,
        )
