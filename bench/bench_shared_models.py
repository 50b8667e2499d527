"""What a session's VAD and turn model cost in memory: Pipecat's per-session models against the
worker's shared ones (voicebot/sharedmodels.py).

    .venv/bin/python bench/bench_shared_models.py [--sessions 20]

Each side runs in a fresh process: it builds the VAD and turn analyzers of N sessions (and
runs each once, so ONNX Runtime allocates its arenas), then reports its RSS growth.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, ROOT)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from voicebot.sharedmodels import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer
kinds = {"pipecat": (SileroVADAnalyzer, LocalSmartTurnAnalyzerV3), "shared": (SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer)}
vad_cls, turn_cls = kinds[KIND]
window, audio = bytes(1024), np.zeros(16000 * 2, dtype=np.float32)
before = rss()
kept, marks = [], []
for i in range(N):
    vad, turn = vad_cls(), turn_cls()
    vad.set_sample_rate(16000); turn.set_sample_rate(16000)
    vad.voice_confidence(window); turn._predict_endpoint(audio)
    kept.append((vad, turn))
    if i == 0:
        marks.append(rss())
after = rss()
print(json.dumps({"first": marks[0] - before, "total": after - before, "each_after_first": (after - marks[0]) / max(1, N - 1)}))
"""


def measure(kind: str, sessions: int) -> dict:
    code = CHILD.replace("ROOT", repr(str(ROOT))).replace("KIND", repr(kind)).replace("N", str(sessions))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    n = parser.parse_args().sessions
    print(f"VAD + turn model for {n} sessions, RSS growth in MiB")
    print(f"{'models':<10}{'first session':>15}{'each after':>12}{'total':>9}")
    for kind in ("pipecat", "shared"):
        r = measure(kind, n)
        print(f"{kind:<10}{r['first']:>15.1f}{r['each_after_first']:>12.2f}{r['total']:>9.1f}")


if __name__ == "__main__":
    main()
