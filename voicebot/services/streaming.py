"""Streaming speech providers over websockets, through Pipecat's own services.

- STT ``deepgram``: DeepgramSTTService, live transcription with interim results
  (``VOICE_STT_BASE_URL`` is Deepgram's API host; the socket is its ``/v1/listen``).
- STT ``openai-realtime``: OpenAIRealtimeSTTService, OpenAI's Realtime API in
  transcription mode (``VOICE_STT_BASE_URL`` is its ``/v1/realtime`` websocket URL).
- TTS ``cartesia``: CartesiaTTSService (``VOICE_TTS_BASE_URL`` is the websocket URL).
- TTS ``elevenlabs``: ElevenLabsTTSService (``VOICE_TTS_BASE_URL`` is the websocket host).

Each session gets its own socket; nothing here loads a model. A voice id that does not
have the provider's shape (an OpenAI or local voice name carried by an assistant) is
replaced by the configured one, and the substitution logged.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from assistants.providers import VOICE_SHAPES  # what each provider's voice ids look like (admin checks them too)

from .hosted import HostedAPI, is_offered, stt_language, tts_speed

logger = logging.getLogger("voicebot.services")

# The providers' documented speed ranges (Cartesia's generation_config, ElevenLabs' voice_settings).
SPEED_RANGES = {"cartesia": (0.6, 1.5), "elevenlabs": (0.7, 1.2)}


def stream_voice(provider: str, requested: str, default: str, offered: frozenset[str] | None = None) -> str:
    """The assistant's voice if `provider` could take it, else the configured default (the substitution is logged)."""
    if not requested or requested == "default":
        return default
    if VOICE_SHAPES[provider].match(requested) and is_offered(requested, offered):
        return requested
    logger.info("[VoiceSession] voice %r is not a %s voice id; speaking with %r", requested, provider, default)
    return default


def stream_speed(provider: str, parameters: dict[str, Any] | None) -> float | None:
    """The session's speaking speed within what `provider` takes, or None for its default."""
    speed = tts_speed(parameters)
    if speed is None:
        return None
    low, high = SPEED_RANGES[provider]
    return min(high, max(low, speed))


def deepgram_language(language: str, model: str) -> Any:
    """The language to ask Deepgram for: the session's, or "multi" (nova-3's code-switching
    recognition) when it is left to the provider; older models know no detection in live
    streaming, so they are asked for English and that is logged."""
    chosen = stt_language(language)
    if chosen is not None:
        return chosen
    if model.startswith("nova-3"):
        return "multi"
    logger.info("[VoiceSession] Deepgram's %s cannot detect the language while streaming; transcribing English", model)
    return "en"


def make_deepgram_stt(api: HostedAPI, *, language: str = "en", words: Sequence[str] = ()) -> Any:
    """DeepgramSTTService: audio streamed over one websocket per session, interim and final transcripts back.
    `words`, the assistant's name and keywords, are boosted the way the model takes them: Nova-3 as
    keyterms (phrases too), Nova-2 and the older models as keywords (Deepgram's docs: each is only
    available for those; keywords are single words, so a phrase goes word by word); Whisper, neither."""
    from pipecat.services.deepgram.stt import DeepgramSTTService

    boost: dict[str, Any] = {}
    if words and api.model.startswith("nova-3"):
        boost["keyterm"] = list(words)
    elif words and not api.model.startswith("whisper"):
        boost["keywords"] = list(dict.fromkeys(word for phrase in words for word in phrase.split()))
    settings = DeepgramSTTService.Settings(model=api.model, language=deepgram_language(language, api.model),
                                           interim_results=True, punctuate=True, smart_format=True, **boost)
    return DeepgramSTTService(api_key=api.api_key, base_url=api.base_url, settings=settings)


def realtime_stt_class() -> type:
    """OpenAIRealtimeSTTService with whole interim transcripts (built lazily: Pipecat's module is heavy)."""
    from pipecat.frames.frames import InterimTranscriptionFrame
    from pipecat.services.openai.stt import OpenAIRealtimeSTTService
    from pipecat.utils.time import time_now_iso8601

    class WholeInterimRealtimeSTTService(OpenAIRealtimeSTTService):
        """Pipecat's realtime transcription, with each interim transcript the text so far.

        OpenAI streams a segment's transcript as deltas ("What", " notes", " do"...), and
        Pipecat pushes each delta as an interim transcript: the page showed one word at a
        time, where Deepgram's and the local Whisper's interim transcripts are the whole
        text heard so far. An empty commit (the VAD's stop after under 100 ms of audio)
        is no failure: nothing was said, so it is logged, not reported.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._so_far: dict[str, str] = {}

        async def _handle_transcription_delta(self, evt: dict) -> None:
            item, delta = evt.get("item_id", ""), evt.get("delta", "")
            if not delta:
                return
            self._so_far[item] = self._so_far.get(item, "") + delta
            await self.push_frame(InterimTranscriptionFrame(self._so_far[item].strip(), self._user_id,
                                                            time_now_iso8601(), result=evt))

        async def _handle_transcription_completed(self, evt: dict) -> None:
            self._so_far.pop(evt.get("item_id", ""), None)
            await super()._handle_transcription_completed(evt)

        async def _handle_error(self, evt: dict) -> None:
            if (evt.get("error") or {}).get("code") == "input_audio_buffer_commit_empty":
                logger.debug("[VoiceSession] realtime STT: end of speech with no audio to transcribe")
                return
            await super()._handle_error(evt)

    return WholeInterimRealtimeSTTService


def make_openai_realtime_stt(api: HostedAPI, *, language: str = "en", prompt: str = "") -> Any:
    """OpenAI's realtime transcription: audio streamed on one socket per session, committed at the VAD's stop.
    `prompt`, naming the assistant and its keywords (`transcriber_prompt`), is the transcription's, except
    for gpt-realtime-whisper, which refuses one (Pipecat would drop it with a warning at every session)."""
    from pipecat.services.openai.stt import OPENAI_REALTIME_WHISPER_MODEL, OpenAIRealtimeSTTService

    prompt = (prompt or None) if api.model != OPENAI_REALTIME_WHISPER_MODEL else None
    settings = OpenAIRealtimeSTTService.Settings(model=api.model, language=stt_language(language), prompt=prompt)
    return realtime_stt_class()(api_key=api.api_key, base_url=api.base_url, settings=settings)


def make_cartesia_tts(api: HostedAPI, *, voice: str, parameters: dict[str, Any] | None = None,
                      sample_rate: int = 24000) -> Any:
    """CartesiaTTSService: each sentence sent on the session's socket, audio and word timings streamed back."""
    from pipecat.services.cartesia.tts import CartesiaTTSService, GenerationConfig

    settings = CartesiaTTSService.Settings(model=api.model, voice=voice)
    speed = stream_speed("cartesia", parameters)
    if speed is not None:
        settings.generation_config = GenerationConfig(speed=speed)
    return CartesiaTTSService(api_key=api.api_key, url=api.base_url, sample_rate=sample_rate, settings=settings,
                              extra_headers=api.headers or None)


def elevenlabs_refusal(code: int | None, reason: str) -> Any:
    """Pipecat's ErrorCategory for ElevenLabs closing a socket it will not serve, else None.

    ElevenLabs opens the socket for a wrong key or an unknown voice and closes it at once
    with 1008 (policy violation) and a reason; the same code also ends an idle socket or
    a context whose voice settings changed, which a new connection does put right.
    """
    from pipecat.utils.errors import ErrorCategory

    text = reason.lower()
    if code != 1008:
        return None
    if "api key" in text or "unauthorized" in text or "authenticat" in text:
        return ErrorCategory.AUTHENTICATION
    if "quota" in text or "credits" in text:
        return ErrorCategory.QUOTA
    if "voice_id" in text and "does not exist" in text:
        return ErrorCategory.INVALID_REQUEST
    return None


def elevenlabs_class() -> type:
    """ElevenLabsTTSService that takes a refused key or voice as final (built lazily: Pipecat's module is heavy)."""
    from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
    from websockets.exceptions import ConnectionClosedError

    class RefusalAwareElevenLabsTTSService(ElevenLabsTTSService):
        """Pipecat's ElevenLabs service, told apart a socket closed for a refused key from a dropped one.

        Pipecat sees only a closed socket and reconnects; each answer then failed as "no
        audio" (not fatal), so a session with a wrong key went on unheard for good. Here
        the close's reason is read, the error reported as final, and no reconnect tried.
        """

        async def _receive_messages(self) -> None:
            try:
                await super()._receive_messages()
            except ConnectionClosedError as exc:
                closed = exc.rcvd
                category = elevenlabs_refusal(closed.code if closed else None, closed.reason if closed else "")
                if category is None:
                    raise
                self._disconnecting = True  # Pipecat's receive loop then ends instead of reconnecting
                await self.push_error(error_msg=f"ElevenLabs closed the connection: {closed.reason}",
                                      exception=exc, category=category, force_treat_as_permanent=True)

    return RefusalAwareElevenLabsTTSService


def make_elevenlabs_tts(api: HostedAPI, *, voice: str, parameters: dict[str, Any] | None = None,
                        sample_rate: int = 24000) -> Any:
    """ElevenLabs' TTS: one multi-stream-input socket per session, a context per answer."""
    from pipecat.services.elevenlabs.tts import ElevenLabsTTSService

    settings = ElevenLabsTTSService.Settings(model=api.model, voice=voice)
    speed = stream_speed("elevenlabs", parameters)
    if speed is not None:
        settings.speed = speed
    return elevenlabs_class()(api_key=api.api_key, url=api.base_url, sample_rate=sample_rate, settings=settings)
