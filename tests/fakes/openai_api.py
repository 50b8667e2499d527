"""A fake OpenAI API on a real local HTTP server, strict about OpenAI's documented contract.

It listens on 127.0.0.1 (a free port) in a background thread and answers the
three endpoints the bot's hosted services use, checking each request the way
OpenAI documents it, so a client that drifts from the API fails here instead
of in production. Request shapes follow the API reference (and the OpenAI
Python SDK's types, which are generated from OpenAI's OpenAPI spec:
``openai.types.chat.completion_create_params``, ``openai.types.audio.*``):

- ``Authorization: Bearer <key>``: missing -> 401 "You didn't provide an API
  key" (``code`` null); a wrong key -> 401 ``invalid_api_key`` "Incorrect API
  key provided: sk-test-****abcd" (masked, as OpenAI quotes it: a prefix and the
  last four characters). Errors always use OpenAI's
  ``{"error": {"message", "type", "param", "code"}}`` object; an injected 429
  names the organisation ("in organization org-...") and carries ``Retry-After``.
  An ``OpenAI-Organization`` header other than the key's organisation -> 401
  ``mismatched_organization``. With ``api_key=None`` it is a keyless server
  (Ollama, vLLM, llama.cpp's): any key or none is taken.
- ``POST /v1/chat/completions`` (JSON): only documented top-level parameters
  (others -> 400 "Unrecognized request argument supplied: X"); ``model`` and a
  non-empty ``messages`` are required; each message has a documented role
  (``developer``/``system``/``user``/``assistant``/``tool``) and only that role's
  fields: text content parts for system/developer/tool, the documented part
  types for user, ``tool_calls`` items ``{id, type: "function", function: {name,
  arguments: <JSON string>}}`` for assistant; a ``tool`` message needs a
  ``tool_call_id`` answering a preceding assistant tool call, and every assistant
  tool call must be answered by a tool message; ``tools`` items are
  ``{type: "function", function: {name, description?, parameters?, strict?}}``
  with names matching ``^[a-zA-Z0-9_-]{1,64}$``; ``tool_choice`` needs ``tools``;
  ``stream_options`` needs ``stream: true``; numeric parameters are type- and
  range-checked (temperature 0..2, top_p 0..1, penalties -2..2).
  ``stream: true`` answers ``text/event-stream`` lines ``data: <chat.completion.chunk>``
  ending with ``data: [DONE]`` (a usage chunk with empty ``choices`` first when
  ``stream_options.include_usage``); otherwise a ``chat.completion`` object.
- ``POST /v1/audio/transcriptions`` (``multipart/form-data``): a ``file`` part
  with a filename in one of the documented formats (flac, mp3, mp4, mpeg, mpga,
  m4a, ogg, wav, webm) and a ``model`` field are required; only documented fields
  (array fields as the SDK sends them, ``include[]`` etc.); ``response_format`` one
  of json/text/srt/verbose_json/vtt/diarized_json (gpt-4o-transcribe and
  gpt-4o-mini-transcribe: json only; the diarize model: json, text or
  diarized_json); no ``prompt`` to the diarize model; ``language`` in ISO-639-1
  form; ``temperature`` 0..1. A
  WAV file must parse as WAV. Answers ``{"text": ...}`` (or the chosen format).
- ``POST /v1/audio/speech`` (JSON): ``model``, ``input`` (at most 4096
  characters) and ``voice`` (a built-in voice name or ``{"id": ...}``) required;
  only documented fields; ``response_format`` one of mp3/opus/aac/flac/wav/pcm;
  ``speed`` a number in 0.25..4.0; ``stream_format`` audio or sse. ``pcm`` is raw
  24 kHz 16-bit signed little-endian mono, no header. With ``voices`` and
  ``speech_rate`` it is a self-hosted speech server instead: its own voice ids, its
  own rate (in the WAV header; ``pcm`` then is raw samples at that rate).

Behaviour, for tests: a transcription returns ``transcript`` (default "what
notes do I have"); speech is a 440 Hz tone (0.5 s per started 10 characters,
capped) so a listener can tell it from silence; a chat completion whose request
offers tools and whose last user message mentions notes streams a ``list_notes``
tool call (``finish_reason: "tool_calls"``); after a ``tool`` message it streams a
short answer built from the tool's result; otherwise it echoes the user. Like
OpenAI's models, it stops at ``max_completion_tokens`` (or ``max_tokens``), one
token per 4 characters: a text or a tool call's JSON arguments cut mid-way, with
``finish_reason: "length"``; and a reasoning model (``o1``, ``o3``, ``gpt-5``...)
refuses ``max_tokens`` with 400 ``unsupported_parameter``, as OpenAI's do, and reasons
before it writes: ``REASONING_TOKENS`` by ``reasoning_effort`` (medium when not sent;
a level the model does not take, or the parameter sent to another model, is a 400),
counted against the cap, so a small cap comes back empty with ``finish_reason:
"length"``, and reported in ``usage.completion_tokens_details.reasoning_tokens``.
``reply_with``, ``call_tool_next`` and ``answer_json_next`` script the next answers.
``response_format`` (structured outputs), ``logprobs`` and ``top_logprobs`` are checked
and answered as ``tests/fakes/structured_outputs.py`` describes: a request with a strict
JSON schema gets a scripted answer only if it fits the schema, and non-streamed answers
carry the tokens' log-probabilities when asked. With
``refuse_tools`` it is an Ollama model without tool support: a request with
``tools`` gets 400 "<model> does not support tools". With
``refuse_stream_options`` it is a server that predates ``stream_options``: 400
"Unrecognized request argument supplied: stream_options".

Stricter than documented or simplified (not confirmed in OpenAI's docs): a
wrong method or unknown path is 404 "Invalid URL (METHOD /path)"; speech in
mp3/opus/aac/flac and ``stream_format: "sse"`` are answered 501 because this
fake only synthesizes PCM/WAV.
"""
from __future__ import annotations

import hmac
import io
import json
import math
import re
import threading
import time
import uuid
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any

from .api_error import ApiError
from .server import LocalHTTPFake
from .structured_outputs import check_response_format, check_sampling, default_instance, logprobs_of

PCM_RATE = 24000  # response_format "pcm": 24 kHz, 16-bit signed little-endian, mono
TONE_HZ = 440.0
SECONDS_PER_10_CHARS = 0.5

# Top-level chat completion parameters (CompletionCreateParams in the SDK).
CHAT_PARAMS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})
MESSAGE_FIELDS = {
    "developer": {"role", "content", "name"},
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "refusal", "audio", "tool_calls", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
USER_PART_TYPES = {"text": "text", "image_url": "image_url", "input_audio": "input_audio", "file": "file"}
ASSISTANT_PART_TYPES = {"text": "text", "refusal": "refusal"}
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
STREAM_OPTIONS = {"include_usage", "include_obfuscation"}
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")

# Audio: transcriptions (TranscriptionCreateParams) and speech (SpeechCreateParams).
TRANSCRIPTION_FIELDS = frozenset({
    "file", "model", "chunking_strategy", "include[]", "keywords[]", "known_speaker_names[]",
    "known_speaker_references[]", "language", "languages[]", "prompt", "response_format", "temperature",
    "timestamp_granularities[]", "stream",
})
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
AUDIO_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
SPEECH_FIELDS = frozenset({"input", "model", "voice", "instructions", "response_format", "speed", "stream_format"})
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
          "marin", "cedar")
SPEECH_INPUT_MAX = 4096


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def wav_format(self) -> dict[str, int]:
        """{rate, channels, sample_width, frames} of a WAV upload (raises wave.Error if not WAV)."""
        with wave.open(io.BytesIO(self.data)) as wav:
            return {"rate": wav.getframerate(), "channels": wav.getnchannels(),
                    "sample_width": wav.getsampwidth(), "frames": wav.getnframes()}


@dataclass
class RecordedRequest:
    """One request the fake received, for assertions."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    status: int = 0  # filled in once answered


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes | Iterable[bytes]  # an iterable is sent chunked (streaming)
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, payload: Any) -> Response:
    return Response(status, "application/json", json.dumps(payload).encode())


# -- type checks ---------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _invalid_type(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
                    param=param, code="invalid_type")


# OpenAI's reasoning models, which refuse max_tokens for max_completion_tokens.
REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
# What such a model thinks before it writes, by `reasoning_effort` (its default is "medium"): the
# tokens count against max_completion_tokens, so a small cap is used up before any text, and the
# answer comes back empty with finish_reason "length" (OpenAI's reasoning guide). The figures are
# the fake's, of the right size for a short question (OpenAI reports hundreds at medium).
REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 64, "medium": 256, "high": 1024}
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English


def _tokens(text: str) -> int:
    """The fake's token count of `text`."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN)) if text else 0


def _call(name: str, arguments: dict[str, Any]) -> dict[str, str]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": json.dumps(arguments)}


def _reasoning_tokens(model: str, effort: Any) -> int:
    """How many tokens `model` reasons for at `effort` before its answer; a `reasoning_effort` the model
    does not take is refused with 400, as OpenAI refuses it (no reasoning; a level of another family)."""
    if not REASONING_MODEL.match(model):
        if effort is not None:
            raise ApiError(400, "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                           param="reasoning_effort", code="unsupported_parameter")
        return 0
    levels = ["low", "medium", "high"]
    if model.startswith("gpt-5"):
        levels.insert(0, "none" if re.match(r"gpt-5\.\d", model) else "minimal")  # 5.1 on: none; 5: minimal
    if effort is None:
        return REASONING_TOKENS["medium"]
    if effort not in levels:
        raise ApiError(400, f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this model. "
                       f"Supported values are: {', '.join(repr(level) for level in levels)}.",
                       param="reasoning_effort", code="unsupported_value")
    return REASONING_TOKENS[effort]


def _within(reply: dict[str, Any], limit: Any) -> dict[str, Any]:
    """`reply` as a model stops at `limit` tokens: cut there, mid-word or mid-JSON, finish_reason "length"."""
    if not isinstance(limit, int) or "tool_calls" in reply:
        return reply
    room = limit * CHARS_PER_TOKEN
    if "tool_call" in reply:
        call = reply["tool_call"]
        if _tokens(call["arguments"]) + 8 <= limit:  # the call's name and framing cost a few tokens too
            return reply
        return {"tool_call": {**call, "arguments": call["arguments"][:max(0, room - 8 * CHARS_PER_TOKEN)]},
                "finish": "length"}
    if _tokens(reply["text"]) <= limit:
        return reply
    return {"text": reply["text"][:room], "finish": "length"}


def _usage(completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    """A completion's `usage`: reasoning tokens are billed as completion tokens, and reported apart."""
    completion = completion_tokens + reasoning_tokens
    return {"prompt_tokens": 50, "completion_tokens": completion, "total_tokens": 50 + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_int(value):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise _invalid_type(name, "a decimal", value)
    if not low <= value <= high:
        raise ApiError(400, f"Invalid '{name}': decimal {'above maximum' if value > high else 'below minimum'} "
                       f"value. Expected a value {'<=' if value > high else '>='} {high if value > high else low}, "
                       f"but got {value} instead.", param=name, code="decimal_above_max_value"
                       if value > high else "decimal_below_min_value")


def _check_int(body: dict[str, Any], name: str, minimum: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _invalid_type(name, "an integer", value)
    if minimum is not None and value < minimum:
        raise ApiError(400, f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
                       f"but got {value} instead.", param=name, code="integer_below_min_value")


def _check_type(body: dict[str, Any], name: str, kind: type | tuple[type, ...], expected: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _invalid_type(name, expected, value)


def _require(body: dict[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    return body[name]


def _unknown(keys: Iterable[str], allowed: Iterable[str], where: str = "") -> None:
    extra = sorted(set(keys) - set(allowed))
    if extra:
        name = f"{where}.{extra[0]}" if where else extra[0]
        if where:
            raise ApiError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
        raise ApiError(400, f"Unrecognized request argument supplied: {name}")


# -- the fake -----------------------------------------------------------------------------

class FakeOpenAI(LocalHTTPFake):
    """In-memory OpenAI API served over real HTTP on 127.0.0.1.

    Use as a context manager (or start()/stop()); `url` is the base URL to give
    the client, e.g. "http://127.0.0.1:54321/v1".
    """

    def __init__(self, api_key: str | None = "sk-fake-openai-key", *, transcript: str = "what notes do I have",
                 max_speech_seconds: float = 3.0, chunk_delay: float = 0.0,
                 voices: tuple[str, ...] = VOICES, speech_rate: int = PCM_RATE, refuse_tools: bool = False,
                 refuse_stream_options: bool = False) -> None:
        self.api_key = api_key
        self.refuse_stream_options = refuse_stream_options  # a server that predates the parameter
        self.refuse_tools = refuse_tools  # as Ollama answers for a model without tool support
        # OpenAI's voices at 24 kHz, or a self-hosted speech server's own (e.g. Piper voices at 22.05 kHz).
        self.voices, self.speech_rate = voices, speech_rate
        self.transcript = transcript
        self.max_speech_seconds = max_speech_seconds
        self.chunk_delay = chunk_delay  # seconds between streamed chunks
        self.requests: list[RecordedRequest] = []
        self._failures: list[int] = []
        self._hangs: list[float] = []
        self._unhang = threading.Event()  # set at stop: no request hangs past the fake's life
        self.organization = "org-Fk3x9QpLm2Vb7Ztr"  # named in 429 messages, as OpenAI's are
        self.retry_after = 20  # seconds, sent as Retry-After with an injected 429
        self._script: list[str | dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- test controls ---------------------------------------------------------

    def fail_next(self, count: int, status: int) -> None:
        """Answer the next `count` requests with `status` (429 or 5xx), before any checks."""
        with self._lock:
            self._failures.extend([status] * count)

    def stop(self) -> None:
        self._unhang.set()
        super().stop()

    def hang_next(self, count: int, seconds: float) -> None:
        """The next `count` requests get no answer for `seconds` (a provider that hangs), then a normal one."""
        with self._lock:
            self._hangs.extend([seconds] * count)

    def reply_with(self, *texts: str) -> None:
        """The next chat completions answer these texts, in order, as a model would stream them."""
        with self._lock:
            self._script.extend(texts)

    def answer_json_next(self, answer: dict[str, Any], *, p_true: float = 0.95) -> None:
        """The next chat completion answers `answer` as JSON (for a request with a strict schema, it
        must fit it); its log-probabilities give a "true" in it `p_true` against "false"."""
        with self._lock:
            self._script.append({"json": answer, "p_true": p_true})

    def call_tool_next(self, name: str, arguments: dict[str, Any]) -> None:
        """The next chat completion calls tool `name` with `arguments` (if the request offers that tool)."""
        with self._lock:
            self._script.append({"tool_call": _call(name, arguments)})

    def call_tools_in_one_delta_next(self, *calls: tuple[str, dict[str, Any]]) -> None:
        """The next chat completion streams these whole tool calls in a single delta, as some
        OpenAI-compatible servers do (OpenAI streams each call on its own, by index)."""
        with self._lock:
            self._script.append({"tool_calls": [_call(name, arguments) for name, arguments in calls]})

    def requests_to(self, path: str, *, ok: bool | None = None) -> list[RecordedRequest]:
        """Requests to `path` ("/v1/chat/completions"...); only 2xx ones with ok=True, only errors with ok=False."""
        with self._lock:
            found = [r for r in self.requests if r.path == path]
        if ok is None:
            return found
        return [r for r in found if (200 <= r.status < 300) == ok]

    # -- request handling --------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request."""
        record = RecordedRequest(method, path.split("?", 1)[0], headers, body)
        with self._lock:
            self.requests.append(record)
            failure = self._failures.pop(0) if self._failures else None
            hang = self._hangs.pop(0) if self._hangs else 0.0
        if hang:
            self._unhang.wait(hang)  # in this request's own thread; the client's timeout should give up first
        try:
            if failure is not None:
                raise self._injected(failure)
            self._authenticate(headers)
            route = self._route(method, record.path)
            response = route(record)
        except ApiError as exc:
            response = _json_response(exc.status, exc.body())
            if exc.status == 429:
                response.headers["retry-after"] = str(self.retry_after)
        record.status = response.status
        return response

    def _injected(self, status: int) -> ApiError:
        if status == 429:
            # As OpenAI words it: the model, the organisation's id and the limits, with Retry-After.
            return ApiError(429, f"Rate limit reached for gpt-4.1-mini in organization {self.organization} on "
                            "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in "
                            f"{self.retry_after}s. Visit https://platform.openai.com/account/rate-limits to learn "
                            "more.", type="requests", code="rate_limit_exceeded")
        return ApiError(status, "The server had an error while processing your request. Sorry about that!",
                        type="server_error")

    def _authenticate(self, headers: dict[str, str]) -> None:
        organization = headers.get("openai-organization")
        if organization is not None and organization != self.organization:
            raise ApiError(401, "OpenAI-Organization header should match organization for API key.",
                           code="mismatched_organization")
        if self.api_key is None:  # a keyless server (Ollama, vLLM, llama.cpp's) takes any key or none
            return
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key.strip():
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        key = key.strip()
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            # OpenAI quotes the wrong key masked: its first characters and its last four.
            masked = f"{key[:8]}{'*' * max(4, len(key) - 12)}{key[-4:]}"
            raise ApiError(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def _route(self, method: str, path: str) -> Any:
        routes = {"/v1/chat/completions": self._chat, "/v1/audio/transcriptions": self._transcribe,
                  "/v1/audio/speech": self._speech}
        if method != "POST" or path not in routes:
            raise ApiError(404, f"Invalid URL ({method} {path})")
        return routes[path]

    @staticmethod
    def _parse_json(record: RecordedRequest) -> dict[str, Any]:
        content_type = record.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(400, f"Invalid Content-Type header ({content_type or 'none'}), expected application/json.")
        try:
            payload = json.loads(record.body or b"")
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                           "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
                           "what was sent was not valid JSON.") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        record.json = payload
        return payload

    # -- chat completions -----------------------------------------------------------

    def _reasoning_tokens(self, model: str, effort: Any) -> int:
        """How many tokens `model` reasons for before it answers (a server's own models may differ)."""
        return _reasoning_tokens(model, effort)

    def _chat(self, record: RecordedRequest) -> Response:
        return self._chat_checked(record, self._parse_json(record))

    def _chat_checked(self, record: RecordedRequest, body: dict[str, Any]) -> Response:
        """A chat completion for a parsed request body, checked against OpenAI's contract."""
        _unknown(body, CHAT_PARAMS - {"stream_options"} if self.refuse_stream_options else CHAT_PARAMS)
        model = _require(body, "model")
        if not isinstance(model, str) or not model:
            raise _invalid_type("model", "a string", model)
        messages = _require(body, "messages")
        if not isinstance(messages, list):
            raise _invalid_type("messages", "an array", messages)
        if not messages:
            raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
                           "an empty array instead.", param="messages", code="empty_array")
        self._check_messages(messages)
        tools = self._check_tools(body)
        self._check_chat_options(body, tools)
        schema = check_response_format(body)  # a strict JSON schema the answer must fit, or None
        check_sampling(body, bool(REASONING_MODEL.match(model)))
        if "max_tokens" in body and REASONING_MODEL.match(model):
            # As OpenAI answers its reasoning models (o1, o3, gpt-5...).
            raise ApiError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                           "'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
        if tools and self.refuse_tools:
            # Ollama's answer (HTTP 400) when the model has no tool support in its template.
            raise ApiError(400, f"registry.ollama.ai/library/{model} does not support tools", type="api_error")
        stream = bool(body.get("stream"))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        thinking = self._reasoning_tokens(model, body.get("reasoning_effort"))
        if isinstance(limit, int) and limit <= thinking:
            reply: dict[str, Any] = {"text": "", "finish": "length"}  # the whole cap went on reasoning
        else:
            reply = _within(self._reply(messages, tools, schema), limit - thinking if isinstance(limit, int) else limit)
        reply["reasoning_tokens"] = min(thinking, limit) if isinstance(limit, int) else thinking
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Response(200, "text/event-stream; charset=utf-8", self._sse(model, reply, include_usage),
                            headers={"Cache-Control": "no-cache"})
        completion = self._completion(model, reply)
        if body.get("logprobs") and reply.get("text") is not None:
            completion["choices"][0]["logprobs"] = logprobs_of(reply["text"], reply.get("p_true", 0.95),
                                                               body.get("top_logprobs") or 0)
        return _json_response(200, completion)

    def _check_messages(self, messages: list[Any]) -> None:
        open_calls: dict[str, str] = {}  # tool_call_id -> function name, awaiting a tool message
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise _invalid_type(where, "an object", message)
            role = message.get("role")
            if role not in MESSAGE_FIELDS:
                raise ApiError(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                               f"'user', 'function', 'tool', and 'developer'.", param=f"{where}.role",
                               code="invalid_value")
            _unknown(message, MESSAGE_FIELDS[role], where)
            if open_calls and role != "tool":
                raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                               "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                               f"response messages: {', '.join(open_calls)}", param="messages")
            if "name" in message and not isinstance(message["name"], str):
                raise _invalid_type(f"{where}.name", "a string", message["name"])
            if role == "assistant":
                self._check_assistant(message, where, open_calls)
            elif role == "tool":
                self._check_content(message.get("content"), f"{where}.content", {"text": "text"}, required=True)
                call_id = message.get("tool_call_id")
                if call_id is None:
                    raise ApiError(400, f"Missing required parameter: '{where}.tool_call_id'.",
                                   param=f"{where}.tool_call_id", code="missing_required_parameter")
                if not isinstance(call_id, str):
                    raise _invalid_type(f"{where}.tool_call_id", "a string", call_id)
                if call_id not in open_calls:
                    raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                   "preceeding message with 'tool_calls'.", param=f"{where}.role")
                del open_calls[call_id]
            else:
                parts = USER_PART_TYPES if role == "user" else {"text": "text"}
                self._check_content(message.get("content"), f"{where}.content", parts, required=True)
        if open_calls:
            raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                           "responding to each 'tool_call_id'. The following tool_call_ids did not have response "
                           f"messages: {', '.join(open_calls)}", param="messages")

    def _check_assistant(self, message: dict[str, Any], where: str, open_calls: dict[str, str]) -> None:
        calls = message.get("tool_calls")
        has_calls = bool(calls) or message.get("function_call") is not None
        self._check_content(message.get("content"), f"{where}.content", ASSISTANT_PART_TYPES,
                            required=not has_calls)
        if calls is None:
            return
        if not isinstance(calls, list):
            raise _invalid_type(f"{where}.tool_calls", "an array", calls)
        for j, call in enumerate(calls):
            at = f"{where}.tool_calls[{j}]"
            if not isinstance(call, dict):
                raise _invalid_type(at, "an object", call)
            _unknown(call, {"id", "type", "function"}, at)
            for name in ("id", "type", "function"):
                if name not in call:
                    raise ApiError(400, f"Missing required parameter: '{at}.{name}'.", param=f"{at}.{name}",
                                   code="missing_required_parameter")
            if not isinstance(call["id"], str) or not call["id"]:
                raise _invalid_type(f"{at}.id", "a string", call["id"])
            if call["type"] != "function":
                raise ApiError(400, f"Invalid value: '{call['type']}'. Supported values are: 'function'.",
                               param=f"{at}.type", code="invalid_value")
            function = call["function"]
            if not isinstance(function, dict):
                raise _invalid_type(f"{at}.function", "an object", function)
            _unknown(function, {"name", "arguments"}, f"{at}.function")
            if not isinstance(function.get("name"), str):
                raise _invalid_type(f"{at}.function.name", "a string", function.get("name"))
            if not isinstance(function.get("arguments"), str):
                raise _invalid_type(f"{at}.function.arguments", "a string", function.get("arguments"))
            open_calls[call["id"]] = function["name"]

    @staticmethod
    def _check_content(content: Any, where: str, part_types: dict[str, str], *, required: bool) -> None:
        if content is None:
            if required:
                raise ApiError(400, f"Missing required parameter: '{where}'.", param=where,
                               code="missing_required_parameter")
            return
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise _invalid_type(where, "one of a string or array of objects", content)
        for k, part in enumerate(content):
            at = f"{where}[{k}]"
            if not isinstance(part, dict) or part.get("type") not in part_types:
                kind = part.get("type") if isinstance(part, dict) else part
                raise ApiError(400, f"Invalid value: '{kind}'. Supported values are: "
                               f"{', '.join(repr(t) for t in part_types)}.", param=f"{at}.type", code="invalid_value")
            payload_key = part_types[part["type"]]
            _unknown(part, {"type", payload_key}, at)
            if payload_key not in part:
                raise ApiError(400, f"Missing required parameter: '{at}.{payload_key}'.",
                               param=f"{at}.{payload_key}", code="missing_required_parameter")
            if payload_key in ("text", "refusal") and not isinstance(part[payload_key], str):
                raise _invalid_type(f"{at}.{payload_key}", "a string", part[payload_key])

    @staticmethod
    def _check_tools(body: dict[str, Any]) -> list[str]:
        tools = body.get("tools")
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        names = []
        for i, tool in enumerate(tools):
            at = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _invalid_type(at, "an object", tool)
            if tool.get("type") != "function":
                raise ApiError(400, f"Invalid value: '{tool.get('type')}'. Supported values are: 'function' and "
                               "'custom'.", param=f"{at}.type", code="invalid_value")
            _unknown(tool, {"type", "function"}, at)
            function = tool.get("function")
            if not isinstance(function, dict):
                raise ApiError(400, f"Missing required parameter: '{at}.function'.", param=f"{at}.function",
                               code="missing_required_parameter")
            _unknown(function, {"name", "description", "parameters", "strict"}, f"{at}.function")
            name = function.get("name")
            if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
                raise ApiError(400, f"Invalid '{at}.function.name': string does not match pattern. Expected a "
                               f"string that matches the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{at}.function.name",
                               code="invalid_value")
            _check_type(function, "description", str, "a string")
            params = function.get("parameters")
            if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
                raise ApiError(400, f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                               "'type: \"object\"'.", param=f"{at}.function.parameters",
                               code="invalid_function_parameters")
            if "strict" in function and function["strict"] is not None and not isinstance(function["strict"], bool):
                raise _invalid_type(f"{at}.function.strict", "a boolean", function["strict"])
            names.append(name)
        return names

    @staticmethod
    def _check_chat_options(body: dict[str, Any], tools: list[str]) -> None:
        _check_type(body, "stream", bool, "a boolean")
        options = body.get("stream_options")
        if options is not None:
            if not body.get("stream"):
                raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                               param="stream_options")
            if not isinstance(options, dict):
                raise _invalid_type("stream_options", "an object", options)
            _unknown(options, STREAM_OPTIONS, "stream_options")
            for name in STREAM_OPTIONS:
                _check_type(options, name, bool, "a boolean")
        _check_number(body, "temperature", 0, 2)
        _check_number(body, "top_p", 0, 1)
        _check_number(body, "frequency_penalty", -2, 2)
        _check_number(body, "presence_penalty", -2, 2)
        _check_int(body, "max_tokens", 1)
        _check_int(body, "max_completion_tokens", 1)
        _check_int(body, "n", 1)
        _check_int(body, "seed")
        for name in ("parallel_tool_calls", "logprobs", "store"):
            _check_type(body, name, bool, "a boolean")
        for name in ("user", "safety_identifier", "prompt_cache_key"):
            _check_type(body, name, str, "a string")
        if body.get("service_tier") is not None and body["service_tier"] not in SERVICE_TIERS:
            raise ApiError(400, f"Invalid service_tier argument: {body['service_tier']}", param="service_tier")
        choice = body.get("tool_choice")
        if choice is not None:
            if not tools:
                raise ApiError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                               "are specified.", param="tool_choice")
            if isinstance(choice, str):
                if choice not in ("none", "auto", "required"):
                    raise ApiError(400, f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and "
                                   "'required'.", param="tool_choice", code="invalid_value")
            elif not (isinstance(choice, dict) and choice.get("type") in ("function", "allowed_tools", "custom")):
                raise _invalid_type("tool_choice", "one of a string or object", choice)

    # -- chat behaviour ----------------------------------------------------------------

    def _reply(self, messages: list[dict[str, Any]], tools: list[str], schema: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        """What the fake model says: {"text": str} or {"tool_call": {"id", "name", "arguments"}}; for a
        request with a strict JSON schema, a scripted answer that fits it (else its least instance)."""
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
        if schema is not None:
            return self._structured(scripted, schema)
        if isinstance(scripted, dict) and "json" in scripted:
            return {"text": json.dumps(scripted["json"])}
        if isinstance(scripted, dict) and all(c["name"] in tools for c in scripted.get("tool_calls")
                                              or [scripted["tool_call"]]):
            return scripted
        if scripted is not None:
            return {"text": scripted if isinstance(scripted, str) else "I can't do that here."}
        last = messages[-1]
        if last["role"] == "tool":
            return {"text": _speak_tool_result(last.get("content"))}
        text = _text_of(last.get("content")) if last["role"] == "user" else ""
        if tools and "list_notes" in tools and re.search(r"\bnotes?\b", text, re.IGNORECASE):
            return {"tool_call": {"id": f"call_{uuid.uuid4().hex[:24]}", "name": "list_notes", "arguments": "{}"}}
        return {"text": f"You said: {text.strip() or 'nothing'}. This is the fake assistant."}

    @staticmethod
    def _structured(scripted: Any, schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        if not (isinstance(scripted, dict) and "json" in scripted):
            return {"text": json.dumps(default_instance(schema), separators=(",", ":")), "p_true": 0.05}
        try:
            jsonschema.validate(scripted["json"], schema)
        except jsonschema.ValidationError as exc:  # the test scripted what OpenAI could never answer
            raise ApiError(500, f"fake: the scripted answer does not fit the request's schema: {exc.message}",
                           type="server_error") from None
        return {"text": json.dumps(scripted["json"], separators=(",", ":")), "p_true": scripted["p_true"]}

    def _chunk(self, cid: str, model: str, created: int, delta: dict[str, Any] | None,
               finish: str | None = None, *, usage: Any = None, with_usage: bool = False) -> bytes:
        chunk: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                 "system_fingerprint": "fp_fake", "service_tier": "default"}
        chunk["choices"] = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if with_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def _sse(self, model: str, reply: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> bytes:
            return self._chunk(cid, model, created, delta, finish, usage=usage, with_usage=include_usage)

        if "tool_calls" in reply:  # whole calls in one delta
            yield chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"index": i, "id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}} for i, c in enumerate(reply["tool_calls"])]})
            yield chunk({}, "tool_calls")
            completion_tokens = sum(_tokens(c["arguments"]) + 8 for c in reply["tool_calls"])
        elif "tool_call" in reply:
            call = reply["tool_call"]
            yield chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": ""}}]})
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["arguments"]}}]})
            yield chunk({}, reply.get("finish", "tool_calls"))
            completion_tokens = _tokens(call["arguments"]) + 8
        else:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            words = reply["text"].split(" ")
            for i, word in enumerate(words):
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
                yield chunk({"content": word if i == 0 else " " + word})
            yield chunk({}, reply.get("finish", "stop"))
            completion_tokens = _tokens(reply["text"])
        if include_usage:
            yield chunk(None, usage=_usage(completion_tokens, reply.get("reasoning_tokens", 0)))
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _completion(model: str, reply: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("text"), "refusal": None}
        finish = reply.get("finish", "stop")
        calls = reply.get("tool_calls") or ([reply["tool_call"]] if "tool_call" in reply else [])
        if calls:
            message["tool_calls"] = [{"id": call["id"], "type": "function",
                                      "function": {"name": call["name"], "arguments": call["arguments"]}}
                                     for call in calls]
            finish = reply.get("finish", "tool_calls")
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": "fp_fake", "service_tier": "default",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": _usage(_tokens(reply.get("text") or ""), reply.get("reasoning_tokens", 0))}

    # -- transcriptions ------------------------------------------------------------------

    def _transcribe(self, record: RecordedRequest) -> Response:
        self._parse_multipart(record)
        _unknown(list(record.form) + list(record.files), TRANSCRIPTION_FIELDS)
        if "file" not in record.files:
            if "file" in record.form:
                raise ApiError(400, "Invalid 'file': expected a file upload, but got a plain form field instead.",
                               param="file")
            raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        for name in record.files:
            if name != "file":
                raise ApiError(400, f"Invalid '{name}': expected a form field, but got a file.", param=name)
        form = {k: v[-1] for k, v in record.form.items() if not k.endswith("[]")}
        for name, values in record.form.items():
            if not name.endswith("[]") and len(values) > 1:
                raise ApiError(400, f"Invalid '{name}': expected a single value.", param=name)
        model = form.get("model")
        if not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model",
                           code="missing_required_parameter")
        upload = record.files["file"]
        extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
        if extension not in AUDIO_EXTENSIONS:
            raise ApiError(400, f"Invalid file format. Supported formats: {AUDIO_EXTENSIONS!r}".replace("'", '"'),
                           param="file", code="invalid_value")
        duration = 0.0
        if extension == "wav":
            try:
                info = upload.wav_format()
            except (wave.Error, EOFError):
                raise ApiError(400, "Audio file might be corrupted or unsupported", param="file",
                               code="invalid_value") from None
            duration = info["frames"] / info["rate"] if info["rate"] else 0.0
        response_format = form.get("response_format", "json")
        if response_format not in TRANSCRIPTION_FORMATS:
            raise ApiError(400, f"Invalid value: '{response_format}'. Supported values are: "
                           f"{', '.join(repr(f) for f in TRANSCRIPTION_FORMATS)}.", param="response_format",
                           code="invalid_value")
        allowed = (("json", "text", "diarized_json") if "diarize" in model
                   else ("json",) if model.startswith(("gpt-4o-transcribe", "gpt-4o-mini-transcribe"))
                   else TRANSCRIPTION_FORMATS)
        if response_format not in allowed:
            raise ApiError(400, f"response_format '{response_format}' is not compatible with model '{model}'. "
                           f"Use {' or '.join(repr(f) for f in allowed)}.", param="response_format",
                           code="unsupported_value")
        if "prompt" in form and "diarize" in model:  # the API reference: "not supported when using gpt-4o-transcribe-diarize"
            raise ApiError(400, f"Unsupported parameter: 'prompt' is not supported with model '{model}'.",
                           param="prompt", code="unsupported_parameter")
        language = form.get("language")
        if language is not None and not re.fullmatch(r"[a-z]{2,3}", language):
            raise ApiError(400, f"Invalid language '{language}'. Language parameter must be specified in "
                           "ISO-639-1 format.", param="language", code="invalid_language_format")
        if "temperature" in form:
            try:
                temperature = float(form["temperature"])
            except ValueError:
                raise _invalid_type("temperature", "a decimal", form["temperature"]) from None
            if not 0 <= temperature <= 1:
                raise ApiError(400, "Invalid 'temperature': expected a value between 0 and 1.", param="temperature")
        if form.get("stream") not in (None, "false", "False"):
            raise ApiError(501, "This fake does not stream transcriptions.", type="server_error")
        text = self.transcript
        if response_format == "text":
            return Response(200, "text/plain; charset=utf-8", (text + "\n").encode())
        if response_format in ("srt", "vtt"):
            stamp = "00:00:00,000 --> 00:00:02,000" if response_format == "srt" else "00:00:00.000 --> 00:00:02.000"
            head = "1\n" if response_format == "srt" else "WEBVTT\n\n"
            return Response(200, "text/plain; charset=utf-8", f"{head}{stamp}\n{text}\n\n".encode())
        if response_format == "verbose_json":
            return _json_response(200, {"task": "transcribe", "language": language or "english",
                                         "duration": round(duration, 2), "text": text, "segments": [],
                                         "usage": {"type": "duration", "seconds": math.ceil(duration)}})
        return _json_response(200, {"text": text, "usage": {"type": "duration", "seconds": math.ceil(duration)}})

    @staticmethod
    def _parse_multipart(record: RecordedRequest) -> None:
        content_type = record.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            raise ApiError(400, f"Invalid Content-Type header ({content_type or 'none'}), expected "
                           "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                           "'Content-Type: multipart/form-data')")
        if "boundary=" not in content_type:
            raise ApiError(400, "Invalid multipart/form-data: no boundary")
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + record.body)
        if not message.is_multipart():
            raise ApiError(400, "Invalid multipart/form-data body")
        for part in message.iter_parts():
            disposition = part.get("content-disposition", "")
            if not str(disposition).startswith("form-data"):
                raise ApiError(400, "Invalid multipart/form-data part: no form-data Content-Disposition")
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            data = part.get_payload(decode=True) or b""
            if filename is not None:
                record.files[name] = UploadedFile(filename, part.get_content_type(), data)
            else:
                record.form.setdefault(name, []).append(data.decode("utf-8"))

    # -- speech -----------------------------------------------------------------------------

    def _speech(self, record: RecordedRequest) -> Response:
        body = self._parse_json(record)
        _unknown(body, SPEECH_FIELDS)
        for name in ("model", "input", "voice"):
            _require(body, name)
        _check_type(body, "model", str, "a string")
        text = body["input"]
        if not isinstance(text, str):
            raise _invalid_type("input", "a string", text)
        if len(text) > SPEECH_INPUT_MAX:
            raise ApiError(400, f"Invalid 'input': string too long. Expected a string with maximum length "
                           f"{SPEECH_INPUT_MAX}, but got a string with length {len(text)} instead.", param="input",
                           code="string_above_max_length")
        voice = body["voice"]
        if isinstance(voice, dict):
            _unknown(voice, {"id"}, "voice")
            if not isinstance(voice.get("id"), str):
                raise _invalid_type("voice.id", "a string", voice.get("id"))
        elif voice not in self.voices:
            raise ApiError(400, f"Invalid value: '{voice}'. Supported values are: "
                           f"{', '.join(repr(v) for v in self.voices)}.", param="voice", code="invalid_value")
        _check_type(body, "instructions", str, "a string")
        response_format = body.get("response_format", "mp3")
        if response_format not in SPEECH_FORMATS:
            raise ApiError(400, f"Invalid value: '{response_format}'. Supported values are: "
                           f"{', '.join(repr(f) for f in SPEECH_FORMATS)}.", param="response_format",
                           code="invalid_value")
        _check_number(body, "speed", 0.25, 4.0)
        stream_format = body.get("stream_format", "audio")
        if stream_format not in ("audio", "sse"):
            raise ApiError(400, f"Invalid value: '{stream_format}'. Supported values are: 'sse' and 'audio'.",
                           param="stream_format", code="invalid_value")
        if stream_format == "sse" and body["model"] in ("tts-1", "tts-1-hd"):
            raise ApiError(400, f"stream_format 'sse' is not supported for model '{body['model']}'.",
                           param="stream_format", code="unsupported_value")
        if stream_format == "sse" or response_format not in ("pcm", "wav"):
            raise ApiError(501, "This fake only synthesizes response_format 'pcm' or 'wav' as raw audio.",
                           type="server_error")
        pcm = self.tone(text, speed=float(body.get("speed") or 1.0))
        if response_format == "wav":
            out = io.BytesIO()
            with wave.open(out, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(self.speech_rate)
                wav.writeframes(pcm)
            return Response(200, "audio/wav", _chunks(out.getvalue(), 4800))
        return Response(200, "audio/pcm", _chunks(pcm, 4800))  # raw: the client must know the rate

    def speech_seconds(self, text: str, *, speed: float = 1.0) -> float:
        """How long the fake's speech for `text` lasts."""
        return min(self.max_speech_seconds, SECONDS_PER_10_CHARS * max(1, math.ceil(len(text) / 10))) / speed

    def tone(self, text: str, *, speed: float = 1.0) -> bytes:
        """The fake's speech for `text`: a 440 Hz tone, 0.5 s per started 10 characters (capped), s16le mono
        at `speech_rate`."""
        rate = self.speech_rate
        seconds = self.speech_seconds(text, speed=speed)
        count = int(rate * seconds)
        fade = min(count // 2, rate // 100)  # 10 ms ramps: no clicks
        out = bytearray()
        for n in range(count):
            gain = min(1.0, n / fade, (count - 1 - n) / fade) if fade else 1.0
            sample = int(0.3 * 32767 * gain * math.sin(2 * math.pi * TONE_HZ * n / rate))
            out += sample.to_bytes(2, "little", signed=True)
        return bytes(out)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _speak_tool_result(content: Any) -> str:
    """A short spoken answer that mentions what the tool returned."""
    text = _text_of(content)
    try:
        result = json.loads(text)
    except ValueError:
        return f"The tool said: {text}."
    if isinstance(result, dict) and isinstance(result.get("notes"), list):
        titles = [str(n.get("title", "")) for n in result["notes"] if isinstance(n, dict)]
        if not titles:
            return "You have 0 notes."
        return f"You have {len(titles)} note{'s' if len(titles) != 1 else ''}: {', '.join(titles)}."
    if isinstance(result, dict) and result.get("title"):
        return f"Your note {result['title']}: {result.get('body', '')}."
    return f"The tool said: {text}."


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the FakeOpenAI bound as `fake`."""

    fake: FakeOpenAI
    server_version = "FakeOpenAI/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streaming

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.fake.handle(self.command, self.path, headers, body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            try:
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout, after a hang)
                self.close_connection = True
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in response.body:
                if piece:
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (interruption)
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: pytest output is for failures."""


FakeOpenAI.handler_class = _Handler
