"""A fake Daily REST API on a real local HTTP server, strict about Daily's documented contract.

It listens on 127.0.0.1 (a free port) in a background thread and answers the
four endpoints the Daily room provider uses, checking each request the way
Daily documents it, so a provider that drifts from the docs fails here instead
of in production:

- ``Authorization: Bearer <key>``: missing or not Bearer -> 400
  ``authorization-header-error``; wrong key -> 401 ``authentication-error``
  (reference/rest-api, "Authentication"; docs/rest-api/errors).
- Bodies must be JSON objects sent as ``application/json`` (the spec's
  requestBody content type); unparsable JSON -> 400 ``json-parsing-error``
  (docs/rest-api/errors).
- ``POST /rooms``: only ``name``, ``privacy``, ``properties`` (spec:
  additionalProperties false); name matches ``[A-Za-z0-9_-]`` and is at most 128
  characters; privacy is "public" or "private" (default "public"); every
  property is a documented room property of the documented JSON type
  (``room-properties`` schema; ``enable_recording`` is a string enum or an array
  of them, never a boolean); a duplicate name -> 400 ``invalid-request-error``
  "a room named X already exists" (reference/rest-api/rooms/create-room).
- ``GET /rooms/:name`` answers the room object ``{id, name, api_created,
  privacy, url, created_at, config}`` with ``config`` holding only non-default
  properties; unknown or expired rooms -> 404 ``not-found``
  (rooms/get-room, rooms/delete-room: "expired rooms are treated ... as having
  been implicitly deleted").
- ``DELETE /rooms/:name`` -> ``{"deleted": true, "name": ...}``; unknown -> 404;
  expired -> 404 with ``"deleted": true`` (rooms/delete-room).
- ``POST /rooms/:name/eject``: ``{"ids"?: [...], "user_ids"?: [...], "ban"?: bool}``
  (additionalProperties false, at most 100 of each) -> ``{"ejectedIds": [...]}``; ids
  that are not in the meeting are no error (rooms/session/eject).
- ``POST /meeting-tokens``: ``{"properties": {...}}`` with documented token
  properties only (``properties`` schema, additionalProperties false;
  ``user_id`` at most 36 characters). Daily does not document that
  ``room_name`` must name an existing room (tokens can even be self-signed), so
  this fake does not require it. The answer is ``{"token": <JWT>}``: an HS256
  JWT signed with the API key whose payload uses Daily's self-signed claim
  abbreviations (``r`` room, ``ud`` user id, ``u`` user name, ``o`` owner,
  ``vo`` start video off, ``exp``, ``d`` domain id, ``iat``) --
  guides/privacy-and-security/self-signing-tokens.

Stricter than documented (the brief asks for it; Daily does not say): ``exp``
must lie in the future, a wrong method on a known path is 405, and a body that
is not ``application/json`` is refused.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .daily_call import DailyCallPlane
from .server import LocalHTTPFake

RECORDING_TYPES = ("cloud", "cloud-audio-only", "local", "raw-tracks")
LANGS = ("da", "de", "en", "es", "fi", "fr", "it", "jp", "ka", "nl", "no", "pt", "pt-BR",
         "pl", "ru", "sv", "tr", "user")
TRANSCODED_AUDIO = ("aac", "wav", "wav-48k", "wav-48k-stereo", "wav-48k-mono", "wav-44k1",
                    "wav-44k1-stereo", "wav-44k1-mono", "")
ROOM_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ROOM_NAME_MAX = 128
USER_ID_MAX = 36

# Room properties and their JSON types, from the spec's `room-properties` schema.
ROOM_PROPERTIES: dict[str, Any] = {
    "nbf": "integer", "exp": "integer", "max_participants": "integer",
    "enable_people_ui": "boolean", "enable_cpu_warning_notifications": "boolean",
    "enable_pip_ui": "boolean", "enable_emoji_reactions": "boolean",
    "enable_hand_raising": "boolean", "enable_prejoin_ui": "boolean",
    "enable_live_captions_ui": "boolean", "enable_network_ui": "boolean",
    "enable_noise_cancellation_ui": "boolean", "enable_breakout_rooms": "boolean",
    "enable_knocking": "boolean", "enable_screenshare": "boolean",
    "enable_video_processing_ui": "boolean", "enable_chat": "boolean",
    "enable_shared_chat_history": "boolean", "start_video_off": "boolean",
    "start_audio_off": "boolean", "enable_recording": "recording",
    "enable_raw_tracks_transcoded_audio": TRANSCODED_AUDIO,
    "eject_at_room_exp": "boolean", "eject_after_elapsed": "integer",
    "enable_advanced_chat": "boolean", "enable_hidden_participants": "boolean",
    "enable_mesh_sfu": "boolean", "sfu_switchover": "number",
    "enable_adaptive_simulcast": "boolean", "enable_multiparty_adaptive_simulcast": "boolean",
    "enforce_unique_user_ids": "boolean", "experimental_optimize_large_calls": "boolean",
    "lang": LANGS, "meeting_join_hook": "string", "geo": "string", "rtmp_geo": "string",
    "disable_rtmp_geo_fallback": "boolean", "recordings_bucket": "object",
    "enable_terse_logging": "boolean", "auto_transcription_settings": "object",
    "enable_transcription_storage": "boolean", "transcription_bucket": "object",
    "recordings_template": "string", "transcription_template": "string",
    "enable_dialout": "boolean", "dialout_config": "object", "streaming_endpoints": "array",
    "permissions": "object", "sip": "object",
}

# Documented defaults: Daily leaves these out of a room's `config` (create-room:
# "The config part of the room object includes only configuration parameters
# that differ from room configuration defaults").
ROOM_DEFAULTS: dict[str, Any] = {
    "max_participants": 200, "enable_screenshare": True, "enable_video_processing_ui": True,
    "enable_chat": False, "enable_shared_chat_history": True, "start_video_off": False,
    "start_audio_off": False, "eject_at_room_exp": False, "enable_advanced_chat": False,
    "enable_hidden_participants": False, "enable_multiparty_adaptive_simulcast": False,
    "enable_adaptive_simulcast": True, "lang": "en", "disable_rtmp_geo_fallback": False,
    "enable_terse_logging": False, "enable_dialout": False,
}

# Meeting-token properties, from the spec's `properties` schema.
TOKEN_PROPERTIES: dict[str, Any] = {
    "room_name": "string", "eject_at_token_exp": "boolean", "eject_after_elapsed": "integer",
    "nbf": "integer", "exp": "integer", "is_owner": "boolean", "user_name": "string",
    "user_id": "string", "enable_screenshare": "boolean", "start_video_off": "boolean",
    "start_audio_off": "boolean", "enable_recording": "recording",
    "enable_prejoin_ui": "boolean", "enable_live_captions_ui": "boolean",
    "enable_recording_ui": "boolean", "enable_terse_logging": "boolean", "knocking": "boolean",
    "start_cloud_recording": "boolean", "start_cloud_recording_opts": "object",
    "auto_start_transcription": "boolean", "close_tab_on_exit": "boolean",
    "redirect_on_meeting_exit": "string", "lang": LANGS, "permissions": "object",
}

# Self-signed token claim names (guides/privacy-and-security/self-signing-tokens).
TOKEN_CLAIMS = {
    "nbf": "nbf", "exp": "exp", "room_name": "r", "user_id": "ud", "user_name": "u",
    "is_owner": "o", "knocking": "k", "close_tab_on_exit": "ctoe",
    "redirect_on_meeting_exit": "rome", "start_cloud_recording": "sr",
    "start_cloud_recording_opts": "sro", "auto_start_transcription": "ast",
    "enable_recording": "er", "enable_screenshare": "ss", "start_video_off": "vo",
    "start_audio_off": "ao", "eject_at_token_exp": "ejt", "eject_after_elapsed": "eje",
    "lang": "uil", "enable_recording_ui": "erui", "permissions": "p",
}


class ApiError(Exception):
    """An error answer in Daily's {"error", "info"} shape."""

    def __init__(self, status: int, error: str, info: str, **extra: Any) -> None:
        super().__init__(info)
        self.status, self.error, self.info, self.extra = status, error, info, extra


@dataclass
class RecordedRequest:
    """One request the fake received, for assertions."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any = None
    body: bytes = b""


@dataclass
class _Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(payload: dict[str, Any], secret: str) -> str:
    """An HS256 JWT, the way Daily's tokens are built."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


def decode_jwt(token: str, secret: str | None = None) -> dict[str, Any]:
    """The payload of `token`; checks the HS256 signature when `secret` is given."""
    header, body, signature = token.split(".")
    if secret is not None:
        expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature)):
            raise ValueError("bad token signature")
    return json.loads(_b64url_decode(body))


def _loads_or_none(body: bytes) -> Any:
    """The JSON in `body` for the request log, or None when there is none."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _type_error(name: str, spec: Any, value: Any) -> str | None:
    """Why `value` is not of documented type `spec`, or None when it is."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if spec == "integer":
        return None if is_int else f"'{name}' must be an integer"
    if spec == "number":
        ok = is_int or (isinstance(value, float) and not isinstance(value, bool))
        return None if ok else f"'{name}' must be a number"
    if spec == "boolean":
        return None if isinstance(value, bool) else f"'{name}' must be a boolean"
    if spec == "string":
        return None if isinstance(value, str) else f"'{name}' must be a string"
    if spec == "object":
        return None if isinstance(value, dict) else f"'{name}' must be an object"
    if spec == "array":
        return None if isinstance(value, list) else f"'{name}' must be an array"
    if spec == "recording":
        values = value if isinstance(value, list) else [value]
        ok = (all(isinstance(v, str) and v in RECORDING_TYPES for v in values)
              and len(set(map(str, values))) == len(values))
        return None if ok else f"'{name}' must be one of {', '.join(RECORDING_TYPES)}"
    if isinstance(spec, tuple):
        return None if value in spec else f"'{name}' must be one of {', '.join(spec)}"
    raise AssertionError(f"unknown type spec {spec!r}")


def validate_properties(props: Any, schema: dict[str, Any], now: float) -> None:
    """Raise ApiError(400) unless `props` only holds documented, well-typed properties."""
    if not isinstance(props, dict):
        raise ApiError(400, "invalid-request-error", "'properties' must be an object")
    for name, value in props.items():
        if name not in schema:
            raise ApiError(400, "invalid-request-error", f"unknown property '{name}'")
        if problem := _type_error(name, schema[name], value):
            raise ApiError(400, "invalid-request-error", problem)
    if "exp" in props and props["exp"] <= now:
        raise ApiError(400, "invalid-request-error", "'exp' must be in the future")
    if "max_participants" in props and props["max_participants"] < 1:
        raise ApiError(400, "invalid-request-error", "'max_participants' must be at least 1")


class FakeDailyAPI(LocalHTTPFake):
    """In-memory Daily REST API served over real HTTP on 127.0.0.1.

    Use as a context manager (or start()/stop()); `url` is the base URL to give
    the provider, e.g. "http://127.0.0.1:54321/v1".
    """

    def __init__(self, api_key: str = "fake-daily-key", domain: str = "fake-domain",
                 clock: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.domain = domain
        self.domain_id = str(uuid.uuid4())
        self.clock = clock
        self.rooms: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        # REST calls and meeting events in the order they happened (see note()).
        self.timeline: list[tuple[Any, ...]] = []
        self._timeline_lock = threading.Lock()
        self.calls = DailyCallPlane(self)  # the meetings inside the rooms (daily_call.py)

    def start(self) -> "FakeDailyAPI":
        super().start()
        self.calls.start()
        return self

    def stop(self) -> None:
        self.calls.stop()
        super().stop()

    def note(self, *entry: Any) -> None:
        """Append to the timeline: ("rest", method, path) or a meeting event ("joined", room, user_id)..."""
        with self._timeline_lock:
            self.timeline.append(entry)

    # -- test controls ---------------------------------------------------------

    def fail_next(self, count: int, status: int, *, retry_after: str | None = None) -> None:
        """Answer the next `count` requests with `status` (429 / 5xx), before any checks."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._failures.extend(_Failure(status, headers) for _ in range(count))

    def decode_token(self, token: str) -> dict[str, Any]:
        """Payload of a token this fake issued; raises if the signature is wrong."""
        return decode_jwt(token, self.api_key)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- request handling --------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one request: (status, JSON body, extra headers)."""
        record = RecordedRequest(method, path, headers, json=_loads_or_none(body), body=body)
        self.note("rest", method, path)
        with self._lock:
            self.requests.append(record)
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return self._injected(failure)
        try:
            self._authenticate(headers)
            route, arg = self._route(method, path)
            payload = self._parse_body(headers, body) if method == "POST" else None
            with self._lock:
                answer = route(arg, payload)
            # Meetings change outside the REST lock (the call plane takes its own lock first).
            if method == "DELETE" and re.fullmatch(r"/v1/rooms/[^/]+", path):
                self.calls.end_meeting(arg)
            elif path.endswith("/eject"):
                answer = {"ejectedIds": self.calls.eject(arg, ids=payload.get("ids", []),
                                                         user_ids=payload.get("user_ids", []))}
            return 200, answer, {}
        except ApiError as exc:
            extra = dict(exc.extra)
            allow = extra.pop("allow", None)
            answer = {"error": exc.error, "info": exc.info, **extra}
            return exc.status, answer, ({"Allow": allow} if allow else {})

    @staticmethod
    def _injected(failure: _Failure) -> tuple[int, dict[str, Any], dict[str, str]]:
        if failure.status == 429:
            body = {"error": "rate-limit-error", "info": "too many requests"}
        else:
            body = {"error": "server-error", "info": "injected failure"}
        return failure.status, body, failure.headers

    def _route(self, method: str, path: str) -> tuple[Callable[..., dict[str, Any]], str]:
        allowed: dict[str, Callable[..., dict[str, Any]]]
        if path == "/v1/rooms":
            allowed, arg = {"GET": self._list_rooms, "POST": self._create_room}, ""
        elif m := re.fullmatch(r"/v1/rooms/([^/]+)", path):
            allowed = {"GET": self._get_room, "POST": self._update_room,
                       "DELETE": self._delete_room}
            arg = m.group(1)
        elif m := re.fullmatch(r"/v1/rooms/([^/]+)/eject", path):
            allowed, arg = {"POST": self._check_eject}, m.group(1)
        elif path == "/v1/meeting-tokens":
            allowed, arg = {"POST": self._create_token}, ""
        else:
            raise ApiError(404, "not-found", f"no endpoint {path}")
        if method not in allowed:
            raise ApiError(405, "invalid-request-error", f"method {method} not allowed on {path}",
                           allow=", ".join(allowed))
        return allowed[method], arg

    def _authenticate(self, headers: dict[str, str]) -> None:
        value = headers.get("authorization", "")
        scheme, _, key = value.partition(" ")
        if scheme != "Bearer" or not key:
            raise ApiError(400, "authorization-header-error",
                           "missing or malformed Authorization: Bearer header")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(401, "authentication-error", "the API key is not valid")

    @staticmethod
    def _parse_body(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(400, "invalid-request-error", "Content-Type must be application/json")
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "json-parsing-error", "request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "invalid-request-error", "request body must be a JSON object")
        return payload

    # -- endpoints (called with self._lock held) -------------------------------------

    def _live_room(self, name: str) -> dict[str, Any] | None:
        room = self.rooms.get(name)
        exp = room["config"].get("exp") if room else None
        if room is not None and exp is not None and exp <= self.clock():
            return None  # expired rooms count as deleted
        return room

    def _list_rooms(self, _arg: str, _payload: None) -> dict[str, Any]:
        live = [r for n in list(self.rooms) if (r := self._live_room(n))]
        return {"total_count": len(live), "data": live}

    def _create_room(self, _arg: str, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = set(payload) - {"name", "privacy", "properties"}
        if unknown:
            raise ApiError(400, "invalid-request-error", f"unknown parameter '{sorted(unknown)[0]}'")
        name = payload.get("name", uuid.uuid4().hex[:20])
        if not isinstance(name, str) or not ROOM_NAME_RE.match(name):
            raise ApiError(400, "invalid-request-error", f"{name} contains invalid characters")
        if len(name) > ROOM_NAME_MAX:
            raise ApiError(400, "invalid-request-error", f"room name longer than {ROOM_NAME_MAX}")
        privacy = self._check_privacy(payload.get("privacy", "public"))
        props = payload.get("properties", {})
        validate_properties(props, ROOM_PROPERTIES, self.clock())
        if self._live_room(name) is not None:
            raise ApiError(400, "invalid-request-error", f"a room named {name} already exists")
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": privacy,
            "url": f"https://{self.domain}.daily.co/{name}",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.clock())),
            "config": {k: v for k, v in props.items() if ROOM_DEFAULTS.get(k, object()) != v},
        }
        self.rooms[name] = room
        return room

    @staticmethod
    def _check_privacy(privacy: Any) -> str:
        if privacy not in ("public", "private"):
            raise ApiError(400, "invalid-request-error", "'privacy' must be public or private")
        return privacy

    def _get_room(self, name: str, _payload: None) -> dict[str, Any]:
        room = self._live_room(name)
        if room is None:
            raise ApiError(404, "not-found", f"room {name} not found")
        return room

    def _update_room(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        room = self._get_room(name, None)
        unknown = set(payload) - {"privacy", "properties"}
        if unknown:
            raise ApiError(400, "invalid-request-error", f"unknown parameter '{sorted(unknown)[0]}'")
        privacy = self._check_privacy(payload.get("privacy", room["privacy"]))
        props = payload.get("properties", {})
        validate_properties(props, ROOM_PROPERTIES, self.clock())
        room["privacy"] = privacy
        room["config"].update(props)
        return room

    def _delete_room(self, name: str, _payload: None) -> dict[str, Any]:
        if name not in self.rooms:
            raise ApiError(404, "not-found", f"room {name} not found")
        expired = self._live_room(name) is None
        del self.rooms[name]
        if expired:
            raise ApiError(404, "not-found", f"room {name} not found", deleted=True)
        return {"deleted": True, "name": name}

    def _check_eject(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Validates the body; the call plane ejects (outside this lock) and answers ejectedIds."""
        self._get_room(name, None)
        unknown = set(payload) - {"ids", "user_ids", "ban"}
        if unknown:
            raise ApiError(400, "invalid-request-error", f"unknown parameter '{sorted(unknown)[0]}'")
        for key in ("ids", "user_ids"):
            value = payload.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 100:
                raise ApiError(400, "invalid-request-error", f"'{key}' must be a list of at most 100 strings")
        if not isinstance(payload.get("ban", False), bool):
            raise ApiError(400, "invalid-request-error", "'ban' must be a boolean")
        return {}

    def _create_token(self, _arg: str, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = set(payload) - {"properties"}
        if unknown:
            raise ApiError(400, "invalid-request-error", f"unknown parameter '{sorted(unknown)[0]}'")
        props = payload.get("properties", {})
        validate_properties(props, TOKEN_PROPERTIES, self.clock())
        if len(props.get("user_id", "")) > USER_ID_MAX:
            raise ApiError(400, "invalid-request-error",
                           f"'user_id' is longer than {USER_ID_MAX} characters")
        claims = {TOKEN_CLAIMS[k]: v for k, v in props.items() if k in TOKEN_CLAIMS}
        claims.update(d=self.domain_id, iat=int(self.clock()))
        return {"token": sign_jwt(claims, self.api_key)}


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the FakeDailyAPI bound as `fake`."""

    fake: FakeDailyAPI
    server_version = "FakeDaily/1.0"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer, extra = self.fake.handle(self.command, self.path, headers, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: pytest output is for failures."""


FakeDailyAPI.handler_class = _Handler
