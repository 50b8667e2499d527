"""Hosted speech-to-text and text-to-speech through Pipecat's own OpenAI service classes.

Any OpenAI-compatible API works: the base URL, key and model come from settings
(VOICE_STT_* and VOICE_TTS_*). Nothing here loads a model; each session gets
its own light service object built from a `HostedAPI`, around the one HTTP client
its stage shares across the worker's sessions (`http_client`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, Sequence

from django.core.exceptions import ImproperlyConfigured
from pipecat.frames.frames import Frame
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import VALID_VOICES, OpenAITTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.tracing.service_decorators import traced_tts

logger = logging.getLogger("voicebot.services")

# The pipeline's output rate with a hosted TTS: OpenAI's own (its "pcm" is 24 kHz); a
# server speaking at another rate is resampled to it (AnyVoiceTTSService).
OPENAI_TTS_SAMPLE_RATE = 24000
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # the speech endpoint's documented range


class HostedConfigError(ImproperlyConfigured):
    """A hosted service is chosen but not usable as configured (e.g. no API key)."""


NO_KEY = "no-key"  # sent to a keyless server: the SDK needs some key, and must not take OPENAI_API_KEY


@dataclass(frozen=True)
class HostedAPI:
    """Where one hosted service lives. The key and headers are left out of repr, so they never reach a log."""

    base_url: str
    api_key: str = field(repr=False)
    model: str
    organization: str = ""
    project: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, what: str, base_url: str, api_key: str, model: str, *, organization: str = "",
                      project: str = "", headers: Any = None, key_required: bool = False) -> "HostedAPI":
        """Check the settings of `what` (e.g. "VOICE_STT") and wrap them; raise HostedConfigError if unusable.

        A keyless server (Ollama, vLLM, llama.cpp's) needs no key; OpenAI itself does, and so
        does every streaming provider (`key_required`)."""
        if not base_url.startswith(("https://", "http://", "wss://", "ws://")):
            raise HostedConfigError(f"{what}_BASE_URL must be an http(s) or ws(s) URL")
        if not api_key and (key_required or "api.openai.com" in base_url):
            from django.conf import settings

            raise HostedConfigError(f"{what}={getattr(settings, what, 'openai')} needs {what}_API_KEY")
        if not model:
            raise HostedConfigError(f"{what}_MODEL must name a model")
        headers = headers or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise HostedConfigError(f"{what}_HEADERS must be a JSON object of strings")
        # An explicit placeholder, never None: the OpenAI client would fall back to
        # OPENAI_API_KEY and might send that key to another provider's base URL.
        return cls(base_url=base_url.rstrip("/"), api_key=api_key or NO_KEY, model=model,
                   organization=organization, project=project, headers=dict(headers))


def http_client(timeout: float, connect: float) -> Any:
    """The HTTP client one hosted stage shares across a worker's sessions.

    Pipecat's services would each build their own (never closed), with the OpenAI SDK's
    600 s read timeout: one stuck upload then held the user's next turns for minutes.
    `openai.DefaultAsyncHttpxClient` keeps the SDK's connection limits and redirects.
    """
    from openai import DefaultAsyncHttpxClient, Timeout

    # openai.Timeout, not httpx.Timeout: the SDK's HTTP client family (httpx2 here) is its own.
    return DefaultAsyncHttpxClient(timeout=Timeout(timeout, connect=connect))


def with_retries(service: Any, retries: int) -> Any:
    """`service` with its OpenAI client retrying failed requests `retries` times (the SDK's default is 2).

    Pipecat's STT and TTS services take an http_client but no max_retries, so the
    client they built is swapped for a copy; `with_options` keeps the shared HTTP client.
    """
    service._client = service._client.with_options(max_retries=retries)
    return service


def stt_language(code: str) -> Language | None:
    """The Pipecat Language for a session's language code ("en", "de", "pt-BR"...), or None to let
    the provider detect it ("auto", empty, or a code Pipecat does not know: guessing English
    would transcribe a German speaker as English words)."""
    if not code or code.lower() == "auto":
        return None
    try:
        return Language(code)
    except ValueError:
        try:
            return Language(code.split("-")[0].lower())
        except ValueError:
            logger.info("[VoiceSession] language %r is not one Pipecat knows: the STT provider detects it", code)
            return None


class DetectingSTTService(OpenAISTTService):
    """Pipecat's OpenAISTTService, which can also leave the language to the provider.

    Pipecat's `_transcribe` insists on a language (it asserts one), and so fell back to
    English for "auto"; OpenAI's endpoint detects the language when the field is left
    out. With a language set, Pipecat's own request is sent unchanged.
    """

    async def _transcribe(self, audio: bytes) -> Any:
        if self._settings.language is not None:
            return await super()._transcribe(audio)
        request: dict[str, Any] = {"file": ("audio.wav", audio, "audio/wav"), "model": self._settings.model}
        if self._settings.prompt is not None:
            request["prompt"] = self._settings.prompt
        if self._settings.temperature is not None:
            request["temperature"] = self._settings.temperature
        return await self._client.audio.transcriptions.create(**request)


def make_openai_stt(api: HostedAPI, *, language: str = "en", http: Any = None, retries: int = 0,
                    prompt: str = "") -> OpenAISTTService:
    """OpenAISTTService: each VAD-delimited segment is posted as a WAV to /audio/transcriptions.
    `prompt` names the assistant and its keywords (`transcriber_prompt`): OpenAI's speech-to-text
    guide gives the prompt for the spelling of names and words the model would otherwise get wrong
    (its diarizing model refuses one)."""
    prompt = prompt if "diarize" not in api.model else ""
    settings = OpenAISTTService.Settings(model=api.model, language=stt_language(language), prompt=prompt or None)
    return with_retries(DetectingSTTService(api_key=api.api_key, base_url=api.base_url, http_client=http,
                                            settings=settings), retries)


def offered_voices(base_url: str, configured: Sequence[str] = ()) -> frozenset[str] | None:
    """The voice ids the TTS server takes: VOICE_TTS_VOICES, else OpenAI's list for OpenAI itself,
    else None (any id: a self-hosted server's voices are its own)."""
    if configured:
        return frozenset(configured)
    if "api.openai.com" in base_url:
        return frozenset(VALID_VOICES)
    return None


def is_offered(voice: str, offered: frozenset[str] | None) -> bool:
    """Whether `voice` may be sent; OpenAI's custom voices ("voice_...") always may."""
    return offered is None or voice in offered or voice.startswith("voice_")


def check_voice(voice: str, offered: frozenset[str] | None = None) -> str:
    """`voice` if the server takes it; raise HostedConfigError otherwise."""
    if not voice or not is_offered(voice, offered):
        choices = ", ".join(sorted(offered or ())) or "any voice id"
        raise HostedConfigError(f"VOICE_TTS_VOICE must be one of {choices}, not {voice!r}")
    return voice


def tts_voice(requested: str, default: str, offered: frozenset[str] | None = None) -> str:
    """The assistant's voice if the server takes it, else the configured default (a substitution is logged)."""
    if not requested or requested == "default":
        return default
    if is_offered(requested, offered):
        return requested
    logger.info("[VoiceSession] voice %r is not one the TTS server offers; speaking with %r", requested, default)
    return default


def tts_speed(parameters: dict[str, Any] | None) -> float | None:
    """The session's speaking speed clamped to the documented range, or None for the default (1.0)."""
    try:
        speed = float((parameters or {}).get("speed", 1.0))
    except (TypeError, ValueError):
        return None
    if speed == 1.0:
        return None
    return min(MAX_SPEED, max(MIN_SPEED, speed))


class AnyVoiceTTSService(OpenAITTSService):
    """Pipecat's OpenAITTSService for any OpenAI-compatible speech server: any voice id, the server's own rate.

    Pipecat's `run_tts` refuses a voice outside OpenAI's list (so Kokoro's "af_bella" or a
    Piper voice could not be used) and asks for "pcm", raw samples it takes to be 24 kHz
    (OpenAI's rate, not a Piper server's 22.05 kHz). This one sends the voice as given
    (OpenAI's custom voices as {"id": ...}) and asks for WAV, whose header tells the
    rate; Pipecat's own `_stream_audio_frames_from_iterator` strips the header and
    resamples to the pipeline's rate.
    """

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        voice = self._settings.voice
        params: dict[str, Any] = {"input": text, "model": self._settings.model, "response_format": "wav",
                                  "voice": {"id": voice} if str(voice).startswith("voice_") else voice}
        if self._settings.instructions:
            params["instructions"] = self._settings.instructions
        if self._settings.speed:
            params["speed"] = self._settings.speed
        async with self._client.audio.speech.with_streaming_response.create(**params) as response:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                    response.iter_bytes(max(self.chunk_size, 44)), strip_wav_header=True, context_id=context_id):
                await self.stop_ttfb_metrics()
                yield frame


def make_openai_tts(api: HostedAPI, *, voice: str, parameters: dict[str, Any] | None = None, http: Any = None,
                    retries: int = 0) -> OpenAITTSService:
    """AnyVoiceTTSService: each sentence is posted to /audio/speech and streamed back as WAV."""
    settings = OpenAITTSService.Settings(model=api.model, voice=voice)
    speed = tts_speed(parameters)
    if speed is not None:
        settings.speed = speed
    return with_retries(AnyVoiceTTSService(api_key=api.api_key, base_url=api.base_url, http_client=http,
                                           sample_rate=OPENAI_TTS_SAMPLE_RATE, settings=settings), retries)
