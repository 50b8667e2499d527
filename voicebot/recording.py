"""A session's recording: both sides of the call as one stereo WAV in Django's storage.

Pipecat's AudioBufferProcessor keeps the user's and the assistant's audio in step
(silence where one side is quiet) and hands it over every few seconds; the chunks go
to a local WAV file as they come, so a long call never sits in memory, and every
connection of the session (a reconnect, a reload) adds to the same file. When the
bot leaves, the file is saved through the default storage (local media files, or
any backend) and named on the VoiceSession row.
"""
from __future__ import annotations

import logging
import wave
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger("voicebot.recording")
SAMPLE_RATE = 16000  # the pipeline's input rate: the user's side needs no resampling
CHUNK_SECONDS = 5  # how much audio the processor holds before it hands it over


class CallRecording:
    """One session's audio, user on the left channel and the assistant on the right."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.frames = 0
        self._wav: wave.Wave_write | None = None
        self._path = Path(settings.VAR_DIR) / "recordings-partial" / f"{session_id}.wav"

    def processor(self) -> Any:
        """A recorder for one connection's pipeline (after the transport's output, to hear both sides)."""
        from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor

        recorder = AudioBufferProcessor(sample_rate=SAMPLE_RATE, num_channels=2, auto_start_recording=True,
                                        buffer_size=SAMPLE_RATE * 2 * CHUNK_SECONDS)

        @recorder.event_handler("on_audio_data")
        async def _chunk(_processor: Any, audio: bytes, sample_rate: int, num_channels: int) -> None:
            self.write(audio)

        return recorder

    def write(self, audio: bytes) -> None:
        """Append interleaved 16-bit stereo audio (a few kilobytes: written in the event loop)."""
        if not audio:
            return
        if self._wav is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(2)
            self._wav.setsampwidth(2)
            self._wav.setframerate(SAMPLE_RATE)
        self._wav.writeframes(audio)
        self.frames += len(audio) // 4

    def save(self) -> str:
        """Close the file and keep it in storage (blocking: file I/O and the ORM). Returns its
        storage name, or "" when nothing was recorded."""
        if self._wav is None:
            return ""
        self._wav.close()
        self._wav = None
        from django.core.files import File
        from django.core.files.storage import default_storage

        from voicesessions.models import VoiceSession

        with open(self._path, "rb") as handle:
            name = default_storage.save(f"recordings/{self.session_id}.wav", File(handle))
        VoiceSession.objects.filter(pk=self.session_id).update(recording=name)
        self._path.unlink(missing_ok=True)
        logger.info("[VoiceSession] session=%s recording saved: %s (%.0f s)", self.session_id, name,
                    self.frames / SAMPLE_RATE)
        return name
