"""A fake of Cartesia's streaming text-to-speech websocket, checking what Cartesia documents.

``wss://api.cartesia.ai/tts/websocket`` (docs.cartesia.ai, "TTS (WebSocket)"):

- Handshake: the key in ``X-API-Key`` (or the ``api_key`` query parameter), the API
  version in ``Cartesia-Version`` (or ``cartesia_version``). A missing version is
  refused with 400, a missing or wrong key with 401.
- Each text message is a generation request: ``model_id``, ``transcript``,
  ``voice`` (``{"mode": "id", "id": <uuid>}``), ``output_format`` (``container``
  raw, ``encoding`` pcm_s16le / pcm_f32le / pcm_mulaw / pcm_alaw, ``sample_rate``
  one of 8000 ... 48000), ``context_id``, and optional ``continue``, ``language``,
  ``add_timestamps``, ``use_normalized_timestamps``, ``max_buffer_delay_ms`` (0-5000)
  and ``generation_config`` (``speed`` 0.6-1.5, ``volume`` 0.5-2.0, ``emotion``).
  ``{"context_id": ..., "cancel": true}`` stops a context.
- The server answers per context: ``chunk`` messages (base64 audio), ``timestamps``
  (``word_timestamps`` with ``words``, ``start``, ``end``) when asked, and ``done``
  once a request with ``continue: false`` has been spoken. A bad request gets an
  ``error`` message for its context (status_code 400) and the socket stays open.

Behaviour for tests: speech is a tone as long as the words would take (`speech`),
`hang_next` leaves requests unanswered, `fail_next` answers with a server error.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from tests.fakes.ws import Handshake, LocalWebsocketFake, Refusal, receive, speech

VERSIONS = ("2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01")
ENCODINGS = ("pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
LANGUAGES = ("en", "fr", "de", "es", "pt", "zh", "ja", "hi", "it", "ko", "nl", "pl", "ru", "sv", "tr")
MODELS = ("sonic-3.6", "sonic-3", "sonic-2", "sonic-turbo", "sonic")
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"  # a voice id of the shape Cartesia gives (a UUID)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REQUEST_FIELDS = {"model_id", "transcript", "voice", "output_format", "context_id", "continue", "language",
                   "add_timestamps", "use_normalized_timestamps", "add_phoneme_timestamps", "max_buffer_delay_ms",
                   "generation_config", "pronunciation_dict_id", "duration", "speed"}
CHUNK_SECONDS = 0.1


class BadRequest(Exception):
    pass


class FakeCartesia(LocalWebsocketFake):
    """Cartesia's TTS websocket on a loopback port; `url` is what CartesiaTTSService takes as `url`."""

    def __init__(self, api_key: str = "sk_car_fake", *, voices: tuple[str, ...] = (VOICE,)) -> None:
        super().__init__()
        self.api_key, self.voices = api_key, voices
        self.requests: list[dict[str, Any]] = []  # every generation request, in order
        self.errors: list[dict[str, Any]] = []  # every error message sent
        self._hangs = 0
        self._failures = 0

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"{super().url}/tts/websocket"

    def hang_next(self, count: int) -> None:
        """Leave the next `count` generation requests unanswered (nor audio, nor done)."""
        self._hangs += count

    def fail_next(self, count: int) -> None:
        """Answer the next `count` generation requests with a server error message."""
        self._failures += count

    def spoken_text(self) -> str:
        return " ".join(r["transcript"] for r in self.requests if r.get("transcript")).strip()

    # -- handshake ------------------------------------------------------------------------
    def check(self, handshake: Handshake) -> None:
        if handshake.path != "/tts/websocket":
            raise Refusal(404, {"error": "Not found"})
        version = handshake.headers.get("cartesia-version") or handshake.param("cartesia_version")
        if not version:
            raise Refusal(400, {"error": "Cartesia-Version header is required."})
        if version not in VERSIONS:
            raise Refusal(400, {"error": f"Invalid Cartesia-Version: {version}."})
        key = handshake.headers.get("x-api-key") or handshake.param("api_key")
        if key != self.api_key:
            raise Refusal(401, {"error": "Invalid API key."})

    # -- one connection -------------------------------------------------------------------
    def serve(self, connection: Any, handshake: Handshake) -> None:
        open_contexts: set[str] = set()
        cancelled: set[str] = set()
        while True:
            try:
                message = receive(connection, handshake, timeout=300)  # Cartesia drops a socket idle 5 minutes
            except TimeoutError:
                connection.close(1000, "idle timeout")
                return
            if isinstance(message, bytes) or not isinstance(message, dict):
                self._send_error(connection, "", "Messages must be JSON text.")
                continue
            if message.get("cancel") is True:
                cancelled.add(str(message.get("context_id")))
                open_contexts.discard(str(message.get("context_id")))
                continue
            try:
                self._check_request(message)
            except BadRequest as exc:
                self._send_error(connection, str(message.get("context_id", "")), str(exc))
                continue
            context = message["context_id"]
            if context in cancelled:
                continue
            self.requests.append(message)
            if self._hangs:
                self._hangs -= 1
                continue  # never answered: no audio, no done, for this request
            if self._failures:
                self._failures -= 1
                self._send_error(connection, context, "Internal server error.", status=500)
                continue
            open_contexts.add(context)
            self._speak(connection, message)
            if not message.get("continue", False):
                open_contexts.discard(context)
                connection.send(json.dumps({"type": "done", "done": True, "status_code": 206, "context_id": context}))

    def _check_request(self, body: dict[str, Any]) -> None:
        unknown = sorted(set(body) - _REQUEST_FIELDS)
        if unknown:
            raise BadRequest(f"Unknown field(s): {', '.join(unknown)}.")
        for name in ("model_id", "voice", "output_format", "context_id"):
            if name not in body:
                raise BadRequest(f"Missing required field: {name}.")
        if not isinstance(body.get("transcript", ""), str):
            raise BadRequest("transcript must be a string.")
        if body["model_id"] not in MODELS:
            raise BadRequest(f"Invalid model_id: {body['model_id']}.")
        voice = body["voice"]
        if not isinstance(voice, dict) or voice.get("mode") != "id" or not isinstance(voice.get("id"), str):
            raise BadRequest("voice must be {\"mode\": \"id\", \"id\": <voice id>}.")
        if not _UUID.match(voice["id"]) or voice["id"] not in self.voices:
            raise BadRequest(f"Voice not found: {voice['id']}.")
        fmt = body["output_format"]
        if not isinstance(fmt, dict) or fmt.get("container") != "raw" or fmt.get("encoding") not in ENCODINGS:
            raise BadRequest("output_format must be raw with one of " + ", ".join(ENCODINGS) + ".")
        if fmt.get("sample_rate") not in SAMPLE_RATES:
            raise BadRequest(f"Invalid sample_rate: {fmt.get('sample_rate')}.")
        if not isinstance(body["context_id"], str) or not body["context_id"]:
            raise BadRequest("context_id must be a non-empty string.")
        if "language" in body and body["language"] not in LANGUAGES:
            raise BadRequest(f"Unsupported language: {body['language']}.")
        delay = body.get("max_buffer_delay_ms")
        if delay is not None and not (isinstance(delay, int) and 0 <= delay <= 5000):
            raise BadRequest("max_buffer_delay_ms must be between 0 and 5000.")
        config = body.get("generation_config") or {}
        speed = config.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or not 0.6 <= speed <= 1.5:
            raise BadRequest("generation_config.speed must be between 0.6 and 1.5.")
        volume = config.get("volume", 1.0)
        if not isinstance(volume, (int, float)) or not 0.5 <= volume <= 2.0:
            raise BadRequest("generation_config.volume must be between 0.5 and 2.0.")

    def _speak(self, connection: Any, body: dict[str, Any]) -> None:
        text, context = body.get("transcript", ""), body["context_id"]
        if not text.strip():
            return
        rate = body["output_format"]["sample_rate"]
        pcm, words = speech(text, rate, speed=float((body.get("generation_config") or {}).get("speed", 1.0)))
        if body["output_format"]["encoding"] != "pcm_s16le":
            pcm = b"\x00" * len(pcm)  # other encodings are accepted; their bytes are not what this fake checks
        step = int(rate * CHUNK_SECONDS) * 2
        for start in range(0, len(pcm), step):
            connection.send(json.dumps({"type": "chunk", "data": base64.b64encode(pcm[start:start + step]).decode(),
                                        "done": False, "status_code": 206, "step_time": 12.0,
                                        "context_id": context}))
        if body.get("add_timestamps"):
            connection.send(json.dumps({"type": "timestamps", "done": False, "status_code": 206,
                                        "context_id": context,
                                        "word_timestamps": {"words": [w for w, _, _ in words],
                                                            "start": [s for _, s, _ in words],
                                                            "end": [e for _, _, e in words]}}))

    def _send_error(self, connection: Any, context: str, message: str, *, status: int = 400) -> None:
        error = {"type": "error", "context_id": context, "status_code": status, "done": True,
                 "title": "Invalid request" if status < 500 else "Server error", "message": message,
                 "error": message}
        self.errors.append(error)
        connection.send(json.dumps(error))
