"""Hosted speech-to-text and text-to-speech through Pipecat's own OpenAI service classes.

Any OpenAI-compatible API works: the base URL, key and model come from settings
(VOICE_STT_* and VOICE_TTS_*). Nothing here loads a model; each session gets
its own light service object built from a `HostedAPI`, around the one HTTP client
its stage shares across the worker's sessions (`http_client`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import VALID_VOICES, OpenAITTSService
from pipecat.transcriptions.language import Language

# OpenAI's speech endpoint answers response_format "pcm" as raw 24 kHz 16-bit
# mono samples; OpenAITTSService always asks for "pcm" and tags its frames with
# its own sample rate, so the service and the pipeline's output must both be 24 kHz.
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
                      project: str = "", headers: Any = None) -> "HostedAPI":
        """Check the settings of `what` (e.g. "VOICE_STT") and wrap them; raise HostedConfigError if unusable.

        A keyless server (Ollama, vLLM, llama.cpp's) needs no key; OpenAI itself does."""
        if not base_url.startswith(("https://", "http://")):
            raise HostedConfigError(f"{what}_BASE_URL must be an http(s) URL")
        if not api_key and "api.openai.com" in base_url:
            raise HostedConfigError(f"{what}=openai needs {what}_API_KEY")
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


def stt_language(code: str) -> Language:
    """The Pipecat Language for a session's language code ("en", "de", "pt-BR"...), English if unknown."""
    try:
        return Language(code)
    except ValueError:
        try:
            return Language(code.split("-")[0].lower())
        except ValueError:
            return Language.EN


def make_openai_stt(api: HostedAPI, *, language: str = "en", http: Any = None, retries: int = 0) -> OpenAISTTService:
    """OpenAISTTService: each VAD-delimited segment is posted as a WAV to /audio/transcriptions."""
    return with_retries(OpenAISTTService(api_key=api.api_key, base_url=api.base_url, http_client=http,
                                         settings=OpenAISTTService.Settings(model=api.model,
                                                                            language=stt_language(language))),
                        retries)


def check_voice(voice: str) -> str:
    """`voice` if OpenAITTSService accepts it; raise HostedConfigError otherwise."""
    if voice not in VALID_VOICES:
        raise HostedConfigError(f"VOICE_TTS_VOICE must be one of {', '.join(sorted(VALID_VOICES))}, not {voice!r}")
    return voice


def tts_voice(requested: str, default: str) -> str:
    """The assistant's voice if it is one of OpenAI's, else the configured default."""
    return requested if requested in VALID_VOICES else default


def tts_speed(parameters: dict[str, Any] | None) -> float | None:
    """The session's speaking speed clamped to the documented range, or None for the default (1.0)."""
    try:
        speed = float((parameters or {}).get("speed", 1.0))
    except (TypeError, ValueError):
        return None
    if speed == 1.0:
        return None
    return min(MAX_SPEED, max(MIN_SPEED, speed))


def make_openai_tts(api: HostedAPI, *, voice: str, parameters: dict[str, Any] | None = None, http: Any = None,
                    retries: int = 0) -> OpenAITTSService:
    """OpenAITTSService: each sentence is posted to /audio/speech and streamed back as 24 kHz PCM."""
    settings = OpenAITTSService.Settings(model=api.model, voice=voice)
    speed = tts_speed(parameters)
    if speed is not None:
        settings.speed = speed
    return with_retries(OpenAITTSService(api_key=api.api_key, base_url=api.base_url, http_client=http,
                                         sample_rate=OPENAI_TTS_SAMPLE_RATE, settings=settings), retries)
