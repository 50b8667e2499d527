"""One Silero VAD and one smart-turn model per worker, shared by all its sessions (issue 14).

Pipecat's SileroVADAnalyzer and LocalSmartTurnAnalyzerV3 each build an ONNX Runtime
InferenceSession per instance, and the pipeline makes one of each per connection: a
worker with 20 sessions held 20 copies of both models and their arenas. Here the
InferenceSession is built once per process (with Pipecat's own options) and each
session keeps only what is its own: the VAD's recurrent state and audio context
(per stream, as in SileroOnnxModel) and the turn analyzer's audio buffer. ONNX
Runtime's InferenceSession.run is documented as safe to call from several threads at
once, so the smart-turn analyzers' executor threads need no lock of ours; the VAD runs
in the event loop, one window at a time.

Subclasses of Pipecat's classes that skip only their model loading: everything else
(thresholds, resets, feature extraction) is Pipecat's.
"""
from __future__ import annotations

import functools
from typing import Any

import onnxruntime as ort
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer


def _bundled(package: str, name: str) -> str:
    from importlib import resources

    return str(resources.files(package).joinpath(name))


@functools.lru_cache(maxsize=None)
def vad_session() -> ort.InferenceSession:
    """The worker's one Silero VAD session (Pipecat's options: CPU, one thread)."""
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    return ort.InferenceSession(_bundled("pipecat.audio.vad.data", "silero_vad.onnx"),
                                providers=["CPUExecutionProvider"], sess_options=opts)


@functools.lru_cache(maxsize=None)
def turn_session() -> ort.InferenceSession:
    """The worker's one smart-turn v3 session (Pipecat's options for its bundled CPU model)."""
    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(_bundled("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx"),
                                sess_options=opts)


class _StreamState(SileroOnnxModel):
    """One audio stream's Silero state over the shared session."""

    def __init__(self, session: ort.InferenceSession) -> None:  # noqa: D107 - no model of its own to load
        self.session = session
        self.sample_rates = [8000, 16000]
        self.reset_states()


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """Pipecat's Silero VAD analyzer on the worker's one VAD session."""

    def __init__(self, *, sample_rate: int | None = None, params: Any = None) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _StreamState(vad_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """Pipecat's smart-turn v3 analyzer on the worker's one turn-model session."""

    def __init__(self, **kwargs: Any) -> None:
        BaseSmartTurn.__init__(self, **kwargs)
        self._log_data = False
        self._session = turn_session()
