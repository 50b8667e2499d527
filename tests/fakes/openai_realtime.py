"""A fake of OpenAI's Realtime API in transcription mode, checking what OpenAI documents.

``wss://api.openai.com/v1/realtime?intent=transcription`` (platform.openai.com,
"Realtime transcription"):

- Handshake: ``Authorization: Bearer <key>``; a wrong key is refused with 401 and
  OpenAI's error body (the key quoted masked). The query must say
  ``intent=transcription``.
- The server opens with ``session.created``. The client configures the session with
  ``session.update``: ``session.type`` "transcription", ``audio.input.format``
  ``{"type": "audio/pcm", "rate": 24000}``, ``audio.input.transcription`` (``model``,
  optional ``language`` as ISO-639-1, ``prompt``, ``delay``), ``turn_detection`` (null
  for client-side turns) and ``noise_reduction``; answered by ``session.updated``, or an
  ``error`` event naming the bad ``param``.
- ``input_audio_buffer.append`` adds base64 PCM16 at 24 kHz; ``input_audio_buffer.commit``
  ends a segment (less than 100 ms of audio is an ``input_audio_buffer_commit_empty``
  error) and is answered by ``input_audio_buffer.committed``, then
  ``conversation.item.input_audio_transcription.delta`` events (each a piece of text)
  and ``...completed`` with the whole ``transcript``. ``input_audio_buffer.clear`` empties
  the buffer (``input_audio_buffer.cleared``).

Behaviour for tests: as the Deepgram fake, the words are scripted (`transcripts`, the
last one repeating) and given only to a segment with speech in it.
"""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import numpy as np

from tests.fakes.ws import Handshake, LocalWebsocketFake, Refusal, receive

MODELS = ("gpt-realtime-whisper", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1", "gpt-transcribe",
          "gpt-live-transcribe")
RATE = 24000
SPEECH_RMS = 300


class FakeOpenAIRealtime(LocalWebsocketFake):
    """OpenAI's realtime transcription socket; `url` is what OpenAIRealtimeSTTService takes as `base_url`."""

    def __init__(self, api_key: str = "sk-fake-realtime", *, transcripts: tuple[str, ...] = ("What notes do I have?",)
                 ) -> None:
        super().__init__()
        self.api_key, self.transcripts = api_key, list(transcripts)
        self.sessions: list[dict[str, Any]] = []  # each accepted session.update's session
        self.errors: list[dict[str, Any]] = []
        self.completed: list[str] = []
        self._segments = 0

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"{super().url}/v1/realtime"

    def check(self, handshake: Handshake) -> None:
        if handshake.path != "/v1/realtime":
            raise Refusal(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
        scheme, _, key = handshake.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or key != self.api_key:
            masked = f"{key[:8]}****{key[-4:]}" if len(key) > 12 else "****"
            raise Refusal(401, {"error": {"message": f"Incorrect API key provided: {masked}. You can find your API "
                                                     "key at https://platform.openai.com/account/api-keys.",
                                          "type": "invalid_request_error", "code": "invalid_api_key",
                                          "param": None}})
        if handshake.param("intent") != "transcription" and handshake.param("model") is None:
            raise Refusal(400, {"error": {"message": "Missing required parameter: 'model' or 'intent'.",
                                          "type": "invalid_request_error", "code": "missing_required_parameter"}})

    def serve(self, connection: Any, handshake: Handshake) -> None:
        session_id = f"sess_{uuid.uuid4().hex[:20]}"
        self._send(connection, {"type": "session.created",
                                "session": {"type": "transcription", "id": session_id,
                                            "object": "realtime.transcription_session"}})
        audio = bytearray()
        previous: str | None = None
        while True:
            message = receive(connection, handshake, timeout=None)
            if not isinstance(message, dict):
                self._error(connection, "invalid_json", "The message could not be parsed as JSON.", None)
                continue
            kind, client_event = message.get("type"), message.get("event_id")
            if kind == "session.update":
                problem = self._check_session(message.get("session"))
                if problem:
                    self._error(connection, "invalid_value", problem[1], problem[0], client_event)
                    continue
                self.sessions.append(message["session"])
                self._send(connection, {"type": "session.updated", "session": {**message["session"], "id": session_id}})
            elif kind == "input_audio_buffer.append":
                try:
                    audio += base64.b64decode(message["audio"], validate=True)
                except (KeyError, ValueError):
                    self._error(connection, "invalid_value", "Invalid 'audio': not base64.", "audio", client_event)
            elif kind == "input_audio_buffer.commit":
                seconds = len(audio) / 2 / RATE
                if seconds < 0.1:
                    self._error(connection, "input_audio_buffer_commit_empty",
                                f"Error committing input audio buffer: buffer too small. Expected at least 100ms "
                                f"of audio, but buffer only has {seconds * 1000:.2f}ms of audio.", None, client_event)
                    continue
                item = f"item_{uuid.uuid4().hex[:20]}"
                self._send(connection, {"type": "input_audio_buffer.committed", "previous_item_id": previous,
                                        "item_id": item})
                self._transcribe(connection, item, bytes(audio))
                audio.clear()
                previous = item
            elif kind == "input_audio_buffer.clear":
                audio.clear()
                self._send(connection, {"type": "input_audio_buffer.cleared"})
            else:
                self._error(connection, "invalid_value", f"Invalid value: '{kind}'. Supported values are: "
                            "'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', "
                            "'input_audio_buffer.clear'.", "type", client_event)

    def _check_session(self, session: Any) -> tuple[str, str] | None:
        if not isinstance(session, dict) or session.get("type") != "transcription":
            return "session.type", "session.type must be 'transcription' on a transcription socket."
        unknown = sorted(set(session) - {"type", "audio", "include"})
        if unknown:
            return f"session.{unknown[0]}", f"Unknown parameter: 'session.{unknown[0]}'."
        audio_in = (session.get("audio") or {}).get("input") or {}
        fmt = audio_in.get("format") or {}
        if fmt.get("type") != "audio/pcm" or fmt.get("rate") != RATE:
            return "session.audio.input.format", "audio/pcm input must be 24000 Hz."
        transcription = audio_in.get("transcription") or {}
        if transcription.get("model") not in MODELS:
            return "session.audio.input.transcription.model", f"Invalid model: {transcription.get('model')!r}."
        language = transcription.get("language")
        if language is not None and not (isinstance(language, str) and len(language) == 2 and language.islower()):
            return "session.audio.input.transcription.language", "language must be an ISO-639-1 code."
        if transcription.get("prompt") and transcription.get("model") == "gpt-realtime-whisper":
            return "session.audio.input.transcription.prompt", "prompt is not supported by gpt-realtime-whisper."
        turns = audio_in.get("turn_detection", None)
        if turns is not None and (not isinstance(turns, dict) or turns.get("type") not in ("server_vad",
                                                                                             "semantic_vad")):
            return "session.audio.input.turn_detection", "turn_detection must be null, server_vad or semantic_vad."
        noise = audio_in.get("noise_reduction")
        if noise is not None and (noise or {}).get("type") not in ("near_field", "far_field"):
            return "session.audio.input.noise_reduction", "noise_reduction.type must be near_field or far_field."
        return None

    def _transcribe(self, connection: Any, item: str, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        frames = [samples[i:i + RATE // 50] for i in range(0, len(samples), RATE // 50)]
        speech = any(float(np.sqrt(np.mean(f * f))) > SPEECH_RMS for f in frames if len(f))
        text = ""
        if speech:
            text = self.transcripts[min(self._segments, len(self.transcripts) - 1)]
            self._segments += 1
            words = text.split()
            for i, word in enumerate(words):
                self._send(connection, {"type": "conversation.item.input_audio_transcription.delta", "item_id": item,
                                        "content_index": 0, "delta": word if i == 0 else f" {word}"})
        self.completed.append(text)
        self._send(connection, {"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                                "content_index": 0, "transcript": text,
                                "usage": {"type": "duration", "seconds": round(len(pcm) / 2 / RATE, 2)}})

    def _send(self, connection: Any, event: dict[str, Any]) -> None:
        connection.send(json.dumps({"event_id": f"event_{uuid.uuid4().hex[:20]}", **event}))

    def _error(self, connection: Any, code: str, message: str, param: str | None, client_event: Any = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param,
                 "event_id": client_event}
        self.errors.append(error)
        self._send(connection, {"type": "error", "error": error})
