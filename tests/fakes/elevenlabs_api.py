"""A fake of ElevenLabs' multi-context text-to-speech websocket, checking what ElevenLabs documents.

``wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input``
(elevenlabs.io/docs, "Multi-Context WebSocket"):

- Handshake: the key in ``xi-api-key``; the options are query parameters
  (``model_id``, ``output_format`` such as pcm_24000, ``auto_mode``,
  ``language_code``, ``inactivity_timeout`` up to 180 s, ``sync_alignment``,
  ``enable_logging``, ``enable_ssml_parsing``, ``apply_text_normalization``). An
  unknown option value is refused with 400. A wrong key or an unknown voice is not
  refused at the handshake: the socket opens and is closed at once with 1008
  (policy violation), as ElevenLabs does (Pipecat issue #1006 shows its logs).
- Text messages carry a ``context_id``: ``{"text": " ", "voice_settings": {...}}``
  opens a context (its voice settings may come only on its first message, and not
  change), ``{"text": "..."}`` adds text, ``{"flush": true}`` speaks what is
  buffered, ``{"close_context": true}`` ends the context, ``{"close_socket": true}``
  the socket. ``{"text": ""}`` keeps the socket alive.
- The server sends ``{"audio": <base64>, "alignment": {"chars", "charStartTimesMs",
  "charDurationsMs"}, "contextId": ...}`` per generated piece, and ``{"isFinal":
  true, "contextId": ...}`` once a closed context's audio is all sent. Text waits
  in the buffer until a sentence ends (``auto_mode=true``) or a flush.
- With no text for ``inactivity_timeout`` (20 s by default) the socket is closed with
  1008.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from tests.fakes.ws import SECONDS_PER_CHAR, Handshake, LocalWebsocketFake, Refusal, receive, speech

VOICE = "21m00Tcm4TlvDq8ikWAM"  # a voice id of ElevenLabs' shape (20 letters and digits)
MODELS = ("eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_multilingual_v2", "eleven_flash_v2",
          "eleven_turbo_v2", "eleven_v3")
PCM_FORMATS = {f"pcm_{rate}": rate for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)}
OTHER_FORMATS = ("mp3_44100_128", "mp3_22050_32", "ulaw_8000", "alaw_8000", "opus_48000_64")
BOOLEANS = ("auto_mode", "sync_alignment", "enable_logging", "enable_ssml_parsing")
PARAMS = {*BOOLEANS, "model_id", "output_format", "language_code", "inactivity_timeout", "apply_text_normalization",
          "seed", "authorization"}
_PATH = re.compile(r"^/v1/text-to-speech/([^/]+)/multi-stream-input$")
_SENTENCE_END = re.compile(r"[.!?;:]\s*$")


class FakeElevenLabs(LocalWebsocketFake):
    """ElevenLabs' multi-context TTS websocket on a loopback port; `url` is what ElevenLabsTTSService takes."""

    def __init__(self, api_key: str = "sk_fake_elevenlabs", *, voices: tuple[str, ...] = (VOICE,)) -> None:
        super().__init__()
        self.api_key, self.voices = api_key, voices
        self.spoken: list[tuple[str, str]] = []  # (context id, text) per generated piece
        self.closed_with: list[tuple[int, str]] = []  # the policy closes it made

    def spoken_text(self) -> str:
        return " ".join(text.strip() for _, text in self.spoken).strip()

    # -- handshake ------------------------------------------------------------------------
    def check(self, handshake: Handshake) -> None:
        if not _PATH.match(handshake.path):
            raise Refusal(404, {"detail": "Not Found"})

        def bad(message: str) -> Refusal:
            return Refusal(400, {"detail": {"status": "invalid_request", "message": message}})

        unknown = sorted(set(handshake.query) - PARAMS)
        if unknown:
            raise bad(f"Unknown query parameter(s): {', '.join(unknown)}")
        if handshake.param("model_id") not in MODELS:
            raise bad(f"A model with model ID {handshake.param('model_id')} does not exist")
        fmt = handshake.param("output_format") or "mp3_44100_128"
        if fmt not in PCM_FORMATS and fmt not in OTHER_FORMATS:
            raise bad(f"Invalid output_format: {fmt}")
        for name in BOOLEANS:
            if handshake.param(name) not in (None, "true", "false"):
                raise bad(f"{name} must be true or false")
        timeout = handshake.param("inactivity_timeout")
        if timeout is not None and not (timeout.isdigit() and 1 <= int(timeout) <= 180):
            raise bad("inactivity_timeout must be between 1 and 180")
        if handshake.param("apply_text_normalization") not in (None, "auto", "on", "off"):
            raise bad("apply_text_normalization must be auto, on or off")

    # -- one connection -------------------------------------------------------------------
    def serve(self, connection: Any, handshake: Handshake) -> None:
        voice = _PATH.match(handshake.path).group(1)  # type: ignore[union-attr]
        if handshake.headers.get("xi-api-key") != self.api_key:
            return self._policy_close(connection, "Invalid API key")
        if voice not in self.voices:
            return self._policy_close(connection, f"A voice with voice_id {voice} does not exist")
        fmt = handshake.param("output_format") or "mp3_44100_128"
        rate = PCM_FORMATS.get(fmt, 44100)
        auto = handshake.param("auto_mode") == "true"
        idle = float(handshake.param("inactivity_timeout") or 20)
        buffers: dict[str, str] = {}
        settings: dict[str, Any] = {}
        while True:
            try:
                message = receive(connection, handshake, timeout=idle)
            except TimeoutError:
                return self._policy_close(connection, f"Have not received a new text input within the timeout "
                                                      f"of {idle:g} seconds. Streaming input terminated.")
            if not isinstance(message, dict):
                return self._policy_close(connection, "Invalid message format")
            if message.get("close_socket"):
                connection.close(1000)
                return
            context = message.get("context_id") or "default"
            if "voice_settings" in message:
                if context in settings and settings[context] != message["voice_settings"]:
                    return self._policy_close(connection, "voice_settings field must be provided in the first "
                                                          "message and then either be not provided or not change.")
                if context in buffers and context not in settings:
                    return self._policy_close(connection, "voice_settings field must be provided in the first "
                                                          "message of a context.")
                settings[context] = message["voice_settings"]
            text = message.get("text")
            if text is not None and not isinstance(text, str):
                return self._policy_close(connection, "text must be a string")
            if text:
                buffers[context] = buffers.get(context, "") + text
                if auto and _SENTENCE_END.search(buffers[context]):
                    self._generate(connection, context, buffers, rate)
            elif text is not None and context not in buffers and message.get("context_id"):
                buffers[context] = ""  # a keepalive that opens nothing new
            if message.get("flush"):
                self._generate(connection, context, buffers, rate)
            if message.get("close_context"):
                self._generate(connection, context, buffers, rate)
                buffers.pop(context, None)
                settings.pop(context, None)
                connection.send(json.dumps({"isFinal": True, "contextId": context}))

    def _generate(self, connection: Any, context: str, buffers: dict[str, str], rate: int) -> None:
        text = buffers.get(context, "")
        if not text.strip():
            return
        buffers[context] = ""
        self.spoken.append((context, text))
        pcm, _ = speech(text.strip(), rate)
        chars = list(text)
        step_ms = SECONDS_PER_CHAR * 1000
        connection.send(json.dumps({
            "audio": base64.b64encode(pcm).decode(), "isFinal": None, "contextId": context,
            "alignment": {"chars": chars, "charStartTimesMs": [round(i * step_ms) for i in range(len(chars))],
                          "charDurationsMs": [round(step_ms)] * len(chars)},
            "normalizedAlignment": None}))

    def _policy_close(self, connection: Any, reason: str) -> None:
        self.closed_with.append((1008, reason))
        connection.close(1008, reason)
