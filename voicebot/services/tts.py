"""Text-to-speech: hibari-tts (a Kokoro distillation whose ONNX voice ships in the wheel)."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService

from .guards import ends_sentence

HIBARI_RATE = 24000


def load_hibari() -> tuple[Any, int]:
    from hibari import Hibari

    engine = Hibari()  # the bundled default voice; other voices would download, so none is chosen
    return engine, int(getattr(engine, "sample_rate", HIBARI_RATE))


def trim_silence(audio: np.ndarray, rate: int, *, keep_after_ms: int | None = None, threshold: float = 0.01,
                 keep_before_ms: int = 30) -> np.ndarray:
    """Drop the silence hibari puts before every piece (about 0.3 s: pure latency), keeping
    `keep_before_ms`; with `keep_after_ms`, keep at most that much of the ~420-460 ms after it.

    The silence after is cut for an answer's opening, spoken before the rest of its sentence
    (guards.SentenceGate): its pause would otherwise be ~150 ms longer than hibari's own within
    the whole sentence (276 ms before an "and", 394 ms at a comma, on the gate's test sentences).
    """
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    end = len(audio) if keep_after_ms is None else int(loud[-1]) + 1 + rate * keep_after_ms // 1000
    return audio[max(0, int(loud[0]) - rate * keep_before_ms // 1000):end]


PAUSE_AFTER_OPENING_MS = 300  # see trim_silence


class HibariTTSService(TTSService):
    """Streams one chunk per sentence from a shared hibari engine."""

    def __init__(self, engine: Any, *, lock: threading.Lock, sample_rate: int, speed: float = 1.0,
                 **kwargs: Any) -> None:
        # TOKEN: each piece of text is spoken as it comes. VoiceLLMService's SentenceGate
        # already hands over whole sentences, and an answer's first clause on its own
        # (guards.py); Pipecat's sentence aggregator would hold that clause back again.
        super().__init__(push_start_frame=True, push_stop_frames=True,
                         text_aggregation_mode=TextAggregationMode.TOKEN,
                         settings=TTSSettings(model=None, voice=None, language=None), **kwargs)
        self._engine = engine
        self._lock = lock  # one ONNX session shared by every session of the worker
        self._engine_rate = sample_rate
        self._speed = speed

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        def synthesize() -> bytes:
            with self._lock:
                chunks = list(self._engine.stream(text, speed=self._speed))
            audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
            audio = trim_silence(audio, self._engine_rate,
                                 keep_after_ms=None if ends_sentence(text) else PAUSE_AFTER_OPENING_MS)
            return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()

        async def one_chunk() -> AsyncGenerator[bytes, None]:
            yield await asyncio.to_thread(synthesize)

        await self.start_tts_usage_metrics(text)
        async for frame in self._stream_audio_frames_from_iterator(one_chunk(), in_sample_rate=self._engine_rate,
                                                                   context_id=context_id):
            await self.stop_ttfb_metrics()
            yield frame
