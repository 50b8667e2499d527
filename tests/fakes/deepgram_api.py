"""A fake of Deepgram's live transcription websocket, checking what Deepgram documents.

``wss://api.deepgram.com/v1/listen`` (developers.deepgram.com, "Live Audio"):

- Handshake: ``Authorization: Token <key>`` (or ``Bearer <temporary token>``); a
  missing or wrong key is refused with 401 ``INVALID_AUTH``. The options are query
  parameters; an unknown model, an unknown encoding, an encoding without a
  ``sample_rate``, a boolean that is not ``true``/``false``, ``utterance_end_ms``
  without ``interim_results=true``, ``keyterm`` to a model other than Nova-3 or
  ``keywords`` to Nova-3 or Whisper (each "only available" for the others) are
  refused with 400.
- Binary messages are audio in the declared encoding (here ``linear16`` is read;
  other encodings are accepted and heard as silence). Text messages are control
  messages: ``KeepAlive``, ``Finalize`` (finish the pending audio now; its result
  carries ``from_finalize: true``) and ``CloseStream`` (answered with ``Metadata``,
  then a normal close).
- ``Results`` messages: interim ones (``is_final: false``) about once a second of
  speech when ``interim_results=true``, and a final one (``is_final: true``,
  ``speech_final: true``) when the speaker stops (``endpointing``). ``SpeechStarted``
  with ``vad_events=true``, ``UtteranceEnd`` with ``utterance_end_ms``.
- A connection that sends neither audio nor a message for 10 s is closed with 1011
  (Deepgram's NET-0001).

Behaviour for tests: the words are scripted, not heard. Each utterance (speech by
an energy detector, ended by silence) is given the next of `transcripts` (the last
one repeats); interim results show its words in proportion to the speech heard so
far. Because the words are scripted, this fake's endpointing never ends an
utterance on less than 0.5 s of silence (Deepgram's own default is 10 ms, and it
would split at pauses, each piece with its own words).
"""
from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np

from tests.fakes.ws import Handshake, LocalWebsocketFake, Refusal, receive

MODELS = ("nova-3", "nova-3-general", "nova-3-medical", "nova-2", "nova-2-general", "nova-2-phonecall",
          "nova", "enhanced", "base", "whisper")
ENCODINGS = ("linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus", "speex",
             "g729")
LANGUAGES = ("multi", "en", "en-US", "en-GB", "en-AU", "en-IN", "en-NZ", "de", "fr", "es", "es-419", "it", "nl",
             "pt", "pt-BR", "ja", "ko", "hi", "ru", "sv", "da", "no", "fi", "pl", "tr", "uk", "zh")
BOOLEANS = ("detect_entities", "diarize", "dictation", "interim_results", "multichannel", "numerals",
            "profanity_filter", "punctuate", "smart_format", "vad_events", "mip_opt_out", "filler_words")
PARAMS = {*BOOLEANS, "callback", "callback_method", "channels", "diarize_model", "encoding", "endpointing", "extra",
          "keyterm", "keywords", "language", "language_hint", "model", "redact", "replace", "sample_rate", "search",
          "tag", "utterance_end_ms", "version"}
IDLE_SECONDS = 10.0
FRAME_SECONDS = 0.02
SPEECH_RMS = 300  # about -40 dBFS: speech, not the silence WebRTC sends between words
MIN_ENDPOINT_SECONDS = 0.5
INTERIM_EVERY_SECONDS = 1.0
SECONDS_PER_CHAR = 0.06


class FakeDeepgram(LocalWebsocketFake):
    """Deepgram's /v1/listen on a loopback port; `url` is what DeepgramSTTService takes as `base_url`."""

    def __init__(self, api_key: str = "dg-fake-key-7c1d", *, transcripts: tuple[str, ...] = ("What notes do I have?",)
                 ) -> None:
        super().__init__()
        self.api_key, self.transcripts = api_key, list(transcripts)
        self.results: list[dict[str, Any]] = []  # every Results message sent
        self._utterances = 0

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"http://127.0.0.1:{self.port}"  # Pipecat derives ws:// for the socket from http://

    def finals(self) -> list[str]:
        return [r["channel"]["alternatives"][0]["transcript"] for r in self.results
                if r["is_final"] and r["channel"]["alternatives"][0]["transcript"]]

    def interims(self) -> list[str]:
        return [r["channel"]["alternatives"][0]["transcript"] for r in self.results if not r["is_final"]]

    # -- handshake ------------------------------------------------------------------------
    def check(self, handshake: Handshake) -> None:
        request_id = str(uuid.uuid4())
        if handshake.path != "/v1/listen":
            raise Refusal(404, {"err_code": "NOT_FOUND", "err_msg": "Not found.", "request_id": request_id})
        auth = handshake.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or key != self.api_key:
            raise Refusal(401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.",
                                "request_id": request_id})

        def bad(message: str) -> Refusal:
            return Refusal(400, {"err_code": "Bad Request", "err_msg": message, "request_id": request_id})

        unknown = sorted(set(handshake.query) - PARAMS)
        if unknown:
            raise bad(f"Unknown query parameter(s): {', '.join(unknown)}.")
        for name in BOOLEANS:
            if handshake.param(name) not in (None, "true", "false"):
                raise bad(f"Invalid value for {name}: {handshake.param(name)!r} (true or false).")
        model, language = handshake.param("model") or "base", handshake.param("language") or "en"
        if model not in MODELS or language not in LANGUAGES or (language == "multi" and not model.startswith("nova-3")):
            raise bad("No such model/language/tier combination found.")
        # Deepgram's docs: Keyterm Prompting "is only available for ... the Nova-3 Model", Keywords
        # "only ... with Nova-2, Nova-1, Enhanced, and Base".
        if handshake.param("keyterm") is not None and not model.startswith("nova-3"):
            raise bad("Keyterm Prompting is only available for Nova-3 models; use keywords.")
        if handshake.param("keywords") is not None and (model.startswith("nova-3") or model == "whisper"):
            raise bad(f"Keywords are not supported for {model}; use keyterm with Nova-3.")
        # Keywords are single words ("no spaces or punctuation"; phrases are keyterms: Deepgram's
        # guidance as VAPI's transcriber docs give it).
        if any(len(value.split()) != 1 for value in handshake.query.get("keywords", [])):
            raise bad("Keywords must be single words; boost a phrase with keyterm on Nova-3.")
        encoding, rate = handshake.param("encoding"), handshake.param("sample_rate")
        if encoding is not None and encoding not in ENCODINGS:
            raise bad(f"Invalid encoding: {encoding}.")
        if encoding is not None and rate is None:
            raise bad("sample_rate must be specified when encoding is specified.")
        if rate is not None and not (rate.isdigit() and 8000 <= int(rate) <= 48000):
            raise bad(f"Invalid sample_rate: {rate}.")
        if not (handshake.param("channels") or "1").isdigit():
            raise bad("channels must be a positive integer.")
        endpointing = handshake.param("endpointing")
        if endpointing is not None and endpointing != "false" and not endpointing.isdigit():
            raise bad("endpointing must be a number of milliseconds or false.")
        utterance_end = handshake.param("utterance_end_ms")
        if utterance_end is not None and (not utterance_end.isdigit() or int(utterance_end) < 1000):
            raise bad("utterance_end_ms must be at least 1000.")
        if utterance_end is not None and handshake.param("interim_results") != "true":
            raise bad("utterance_end_ms requires interim_results=true.")

    # -- one connection -------------------------------------------------------------------
    def serve(self, connection: Any, handshake: Handshake) -> None:
        stream = _Stream(self, connection, handshake)
        while True:
            try:
                message = receive(connection, handshake, timeout=IDLE_SECONDS)
            except TimeoutError:
                connection.close(1011, "Deepgram did not receive audio data or a text message within the "
                                       "timeout window. See https://dpgr.am/net0001")
                return
            if isinstance(message, bytes):
                stream.audio(message)
            elif isinstance(message, dict) and message.get("type") == "KeepAlive":
                continue
            elif isinstance(message, dict) and message.get("type") == "Finalize":
                stream.finish(from_finalize=True)
            elif isinstance(message, dict) and message.get("type") == "CloseStream":
                stream.finish(from_finalize=False)
                connection.send(json.dumps({"type": "Metadata", "transaction_key": "deprecated",
                                            "request_id": stream.request_id, "sha256": "0" * 64,
                                            "created": "2026-12-04T00:00:00.000Z",
                                            "duration": round(stream.clock, 3), "channels": 1}))
                connection.close(1000)
                return
            else:
                connection.close(1008, "DATA-0000: the message could not be decoded")
                return

    def next_transcript(self) -> str:
        text = self.transcripts[min(self._utterances, len(self.transcripts) - 1)]
        self._utterances += 1
        return text


def _rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0


class _Stream:
    """One connection's audio: an energy detector cutting it into utterances, and their Results."""

    def __init__(self, fake: FakeDeepgram, connection: Any, handshake: Handshake) -> None:
        self.fake, self.connection = fake, connection
        self.request_id = str(uuid.uuid4())
        self.rate = int(handshake.param("sample_rate") or 16000)
        self.linear16 = (handshake.param("encoding") or "linear16") == "linear16"
        self.interim = handshake.param("interim_results") == "true"
        self.vad_events = handshake.param("vad_events") == "true"
        endpointing = handshake.param("endpointing")
        self.endpoint = (None if endpointing == "false"
                         else max(MIN_ENDPOINT_SECONDS, int(endpointing or 10) / 1000))
        utterance_end = handshake.param("utterance_end_ms")
        self.utterance_end = int(utterance_end) / 1000 if utterance_end else None
        self.model = handshake.param("model") or "base"
        self.pending = b""
        self.clock = 0.0  # seconds of audio received
        self.speech_start: float | None = None  # the current utterance's first speech
        self.speech_end = 0.0  # ...and its latest
        self.heard = 0.0  # seconds of speech in it
        self.last_interim = 0.0
        self.last_word_end: float | None = None  # for UtteranceEnd
        self._script: str | None = None  # the words of the utterance being heard

    def audio(self, data: bytes) -> None:
        self.pending += data
        frame = int(self.rate * FRAME_SECONDS) * 2
        while len(self.pending) >= frame:
            chunk, self.pending = self.pending[:frame], self.pending[frame:]
            self.clock += FRAME_SECONDS
            loud = self.linear16 and _rms(chunk) > SPEECH_RMS
            if loud:
                if self.speech_start is None:
                    self.speech_start, self.last_interim = self.clock - FRAME_SECONDS, self.clock
                    if self.vad_events:
                        self.connection.send(json.dumps({"type": "SpeechStarted", "channel": [0, 1],
                                                         "timestamp": round(self.speech_start, 3)}))
                self.speech_end, self.heard = self.clock, self.heard + FRAME_SECONDS
                if self.interim and self.clock - self.last_interim >= INTERIM_EVERY_SECONDS:
                    self.last_interim = self.clock
                    self._send(self._words(partial=True), is_final=False)
            elif self.speech_start is not None and self.endpoint is not None \
                    and self.clock - self.speech_end >= self.endpoint:
                self.finish(from_finalize=False)
            elif self.utterance_end is not None and self.last_word_end is not None \
                    and self.clock - self.last_word_end >= self.utterance_end:
                self.connection.send(json.dumps({"type": "UtteranceEnd", "channel": [0, 1],
                                                 "last_word_end": round(self.last_word_end, 3)}))
                self.last_word_end = None

    def finish(self, *, from_finalize: bool) -> None:
        """The pending utterance's final result (an empty one when Finalize finds none)."""
        if self.speech_start is None:
            if from_finalize:
                self._send("", is_final=True, from_finalize=True, start=self.clock)
            return
        self._send(self._words(partial=False), is_final=True, from_finalize=from_finalize)
        self.last_word_end = self.speech_end
        self.speech_start, self.heard = None, 0.0

    def _words(self, *, partial: bool) -> str:
        if self._script is None:
            self._script = self.fake.next_transcript()
        words = self._script.split()
        if partial:
            expected = max(FRAME_SECONDS, len(self._script) * SECONDS_PER_CHAR)
            return " ".join(words[:max(1, math.ceil(len(words) * min(0.9, self.heard / expected)))])
        text, self._script = self._script, None
        return text

    def _send(self, transcript: str, *, is_final: bool, from_finalize: bool = False, start: float | None = None
              ) -> None:
        start = self.speech_start if start is None else start
        start = start if start is not None else self.clock
        end = self.speech_end if transcript else start
        words = transcript.split()
        step = (end - start) / len(words) if words else 0.0
        result = {
            "type": "Results", "channel_index": [0, 1], "start": round(start, 3),
            "duration": round(max(0.0, end - start), 3), "is_final": is_final, "speech_final": is_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": transcript, "confidence": 0.98 if words else 0.0,
                "words": [{"word": w.strip(".,?!").lower(), "punctuated_word": w, "confidence": 0.98,
                           "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
                          for i, w in enumerate(words)]}]},
            "metadata": {"request_id": self.request_id, "model_uuid": "1dbdfb4d-85b2-4659-9ab7-5c4ee1ff6bbb",
                         "model_info": {"name": f"general-{self.model}", "version": "2025-04-01.0",
                                        "arch": self.model.split("-general")[0]}},
        }
        self.fake.results.append(result)
        self.connection.send(json.dumps(result))
