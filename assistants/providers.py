"""What an assistant can choose for each stage of its voice pipeline: the catalogue of providers.

One list, read by the admin's validation, the join's early check and the workers
(voicebot.services builds the services named here). "local" is the worker's own
model for the stage (Whisper, the llama.cpp model, hibari), loaded only by workers
whose settings name it; "openai" is any OpenAI-compatible API; the rest are
streaming providers over websockets.
"""
from __future__ import annotations

import re

STAGES = ("stt", "llm", "tts")
STAGE_NAMES = {"stt": "transcriber", "llm": "LLM", "tts": "voice"}
PROVIDERS: dict[str, tuple[str, ...]] = {
    "stt": ("local", "openai", "openai-realtime", "deepgram"),
    "llm": ("local", "openai"),
    "tts": ("local", "openai", "cartesia", "elevenlabs"),
}
STREAMING = ("openai-realtime", "deepgram", "cartesia", "elevenlabs")
# Pipecat's class for each kind of OpenAI-compatible LLM server (VOICE_LLM_FLAVOR, an endpoint's flavor).
LLM_FLAVORS = ("openai", "ollama", "groq", "azure")
# The voice ids each streaming TTS provider takes; an OpenAI-compatible server names its own.
VOICE_SHAPES = {"cartesia": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
                "elevenlabs": re.compile(r"^[A-Za-z0-9]{20}$")}


def voice_fits(provider: str, voice: str) -> bool:
    """Whether `provider` could speak with voice id `voice` (blank or "default": its default voice)."""
    if not voice or voice == "default" or provider not in VOICE_SHAPES:
        return True
    return bool(VOICE_SHAPES[provider].match(voice))


def stage_of(setting: str) -> str:
    """"VOICE_STT" -> "stt"."""
    return setting.removeprefix("VOICE_").lower()
