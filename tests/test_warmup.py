"""A worker runs each local model once at start, so the first turn is not the slow one."""
from __future__ import annotations

import logging

from voicebot.services import load_bundle


def test_the_worker_warms_every_local_model(settings, caplog):
    settings.VOICE_WARM_MODELS = True
    with caplog.at_level(logging.INFO, logger="voicebot.services"):
        bundle = load_bundle()
    try:
        warmed = [r.getMessage() for r in caplog.records if "models warmed" in r.getMessage()]
        assert len(warmed) == 1
        assert all(f"{stage} " in warmed[0] for stage in ("stt", "llm", "tts")), warmed
    finally:
        del bundle.llm_server
