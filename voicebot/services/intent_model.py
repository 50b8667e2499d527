"""Which notes tool a sentence asks for, by a classifier over sentence embeddings and words.

The offline LLM cannot call tools, and word patterns miss requests phrased in ways nobody
wrote a pattern for. This is a softmax regression over two views of a sentence: its
all-MiniLM-L6-v2 embedding (`embeddings.py`), which knows that "stash" and "save" mean the
same, and its hashed word n-grams, which tell "remind me to" (a request) from "remind me
how" (a question) where the embedding sees one topic. Cross-validated on the training set,
the two together beat either alone (docs/llm-models.md). It is trained when first used on
`intent_training.json`: sentences for each tool and for plain chat, written without seeing
the benchmark set (`bench/tool_requests.json`), which `bench/bench_tools.py` scores it on.

Training is plain numpy gradient descent: about 800 vectors of 384 numbers train in well
under a second, so no learning library (scikit-learn is not installed) is needed, and the
result is the same on every machine (fixed seed, full-batch updates).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embeddings import MiniLM, shared as shared_encoder
from .modelfiles import model_dir

logger = logging.getLogger("voicebot.intents")

TRAINING = Path(__file__).with_name("intent_training.json")
CHAT = "chat"
# Chosen by five-fold cross-validation on the training set (bench/bench_tools.py --sweep),
# never on the benchmark set: a tool no pattern found is called only when the classifier
# is THRESHOLD sure of it, and a pattern's call stands unless it is VETO sure of chat.
THRESHOLD = 0.5
VETO = 0.7
CHAT_WEIGHT = 3.0  # a false call costs the user more than a missed one (they can ask again)
_EPOCHS = 600
_RATE = 0.5
_L2 = 1e-4
_NGRAM_BUCKETS = 2048
_WORD = re.compile(r"[a-z0-9']+")


def ngrams(text: str) -> np.ndarray:
    """Word 1- to 3-grams, with sentence edges, hashed into buckets and L2-normalised.

    crc32, not hash(): Python salts str hashes per process, and the trained weights must
    mean the same in every worker.
    """
    words = ["<s>", *_WORD.findall(text.lower()), "</s>"]
    v = np.zeros(_NGRAM_BUCKETS, dtype=np.float32)
    for n in (1, 2, 3):
        for i in range(len(words) - n + 1):
            v[zlib.crc32(" ".join(words[i:i + n]).encode()) % _NGRAM_BUCKETS] += 1.0
    return v / max(float(np.linalg.norm(v)), 1e-9)


def features(embedding: np.ndarray, text: str) -> np.ndarray:
    return np.concatenate([embedding, ngrams(text)])


@dataclass(frozen=True)
class Guess:
    tool: str  # a tool name, or CHAT
    confidence: float


class IntentModel:
    """A trained classifier: `guess(text)` names the most likely tool and how sure it is."""

    def __init__(self, encoder: MiniLM, labels: list[str], weights: np.ndarray, bias: np.ndarray) -> None:
        self._encoder, self.labels, self._w, self._b = encoder, labels, weights, bias

    @classmethod
    def train(cls, encoder: MiniLM, items: list[dict], cache: Path | None = None) -> "IntentModel":
        """Fit on `items`; `cache` keeps the sentences' embeddings between processes."""
        texts = [item["text"] for item in items]
        tags = [item["tool"] or CHAT for item in items]
        labels = sorted(set(tags))
        x = np.stack([features(e, t) for e, t in zip(_embed(encoder, texts, cache), texts)])
        y = np.array([labels.index(tag) for tag in tags])
        w, b = fit(x, y, len(labels), labels.index(CHAT) if CHAT in labels else None)
        return cls(encoder, labels, w, b)

    def probabilities(self, text: str) -> dict[str, float]:
        p = _softmax(features(self._encoder.encode(text), text)[None, :] @ self._w + self._b)[0]
        return dict(zip(self.labels, p.tolist()))

    def guess(self, text: str) -> Guess:
        p = self.probabilities(text)
        tool = max(p, key=p.__getitem__)
        return Guess(tool, p[tool])


def _embed(encoder: MiniLM, texts: list[str], cache: Path | None) -> np.ndarray:
    """The training sentences' embeddings, read from `cache` when it holds these very sentences.

    Encoding them takes a few seconds, paid once per machine rather than at every worker
    (or `--spawn` bot) start. The file is named by a hash of the sentences, so an edited
    training set is encoded afresh.
    """
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"intent-embeddings-{digest}.npy" if cache else None
    if path is not None and path.exists():
        x = np.load(path)
        if x.shape == (len(texts), 384):
            return x
    x = np.stack([encoder.encode(text) for text in texts]).astype(np.float32)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("wb") as out:
                np.save(out, x)
            partial.replace(path)  # atomic: a reader never sees half a file
        except OSError as exc:
            logger.warning("[BotJoin] could not cache the notes classifier's embeddings: %s", exc)
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def fit(x: np.ndarray, y: np.ndarray, classes: int, chat: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression by full-batch gradient descent, classes weighted by their size.

    Weighting keeps the many chat sentences from drowning a tool with few examples; the
    chat class (index `chat`) then weighs CHAT_WEIGHT times more, against false calls.
    """
    onehot = np.eye(classes, dtype=np.float32)[y]
    counts = onehot.sum(0)
    class_weight = len(y) / (classes * counts)
    if chat is not None:
        class_weight[chat] *= CHAT_WEIGHT
    sample_weight = class_weight[y][:, None]
    w = np.zeros((x.shape[1], classes), dtype=np.float32)
    b = np.zeros(classes, dtype=np.float32)
    scale = 10.0  # both views are unit vectors: scaled up, a linear head can be confident
    xs = x * scale
    for _ in range(_EPOCHS):
        grad = (_softmax(xs @ w + b) - onehot) * sample_weight / len(y)
        w -= _RATE * (xs.T @ grad + _L2 * w)
        b -= _RATE * grad.sum(0)
    return w * scale, b


_lock = threading.Lock()
_model: IntentModel | None = None


def shared() -> IntentModel:
    """The worker's one classifier, trained on first use (the worker warms it at start)."""
    global _model
    with _lock:
        if _model is None:
            items = json.loads(TRAINING.read_text())["items"]
            _model = IntentModel.train(shared_encoder(), items, cache=model_dir())
            logger.info("[BotJoin] notes classifier trained on %d sentences", len(items))
        return _model


if __name__ == "__main__":  # scripts/bootstrap.sh: encode the training set once per machine
    import time

    started = time.perf_counter()
    model = shared()
    print(f"[setup] notes classifier ready ({len(model.labels)} classes, "
          f"{time.perf_counter() - started:.1f} s; embeddings cached in {model_dir()})")
