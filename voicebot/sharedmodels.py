"""One Silero VAD and one smart-turn model per worker, shared by all its sessions (issue 14).

Pipecat's SileroVADAnalyzer and LocalSmartTurnAnalyzerV3 each build an ONNX Runtime
InferenceSession per instance, and the pipeline makes one of each per connection: a
worker with 20 sessions held 20 copies of both models and their arenas. Here the
InferenceSession is built once per process (with Pipecat's own options) and each
session keeps only what is its own: the VAD's recurrent state and audio context
(per stream, as in SileroOnnxModel) and the turn analyzer's audio buffer. ONNX
Runtime's InferenceSession.run is documented as safe to call from several threads at
once, so the worker's smart-turn threads (one per core, `turn_executor`) need no lock of
ours; the VAD runs on the event loop, one window at a time (`analyze_audio`).

Subclasses of Pipecat's classes that skip only their model loading: everything else
(thresholds, resets, feature extraction) is Pipecat's.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADState
from pipecat.audio.volume import VOLUME_WINDOW_SECS, AudioVolumeTracker


logger = logging.getLogger("voicebot.worker")


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


def _started(barrier: threading.Barrier) -> int:
    barrier.wait(10)  # each thread waits for the others, so each submit starts a thread
    return threading.get_native_id()


@functools.lru_cache(maxsize=None)
def _turn_threads() -> tuple[ThreadPoolExecutor, frozenset[int]]:
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smart-turn")
    barrier = threading.Barrier(threads)
    return executor, frozenset(f.result() for f in [executor.submit(_started, barrier) for _ in range(threads)])


def turn_executor() -> ThreadPoolExecutor:
    """The worker's threads for smart-turn inference, one per usable core, shared by its sessions.

    Pipecat gives each analyzer a thread of its own, started when its first turn ends. Here
    they are started at once, so that `prioritise_turn_model` knows them.
    """
    return _turn_threads()[0]


def prioritise_turn_model(nice: int) -> int:
    """Run this process's threads `nice` steps below the turn model's; the threads reniced.

    A turn's verdict is on every answer's path, once a turn; the event loop carries every
    session's audio, which has buffers. On one busy core the scheduler shares the core out
    evenly, and the verdict waited: 52 -> 150 ms at 8 sessions (docs/benchmarks.md). Raising
    a thread's nice value needs no privilege (lowering the model's would), so every thread
    but the turn model's is reniced, and the threads they start later (aiortc's, the default
    executor's) inherit it. Child processes started before (a local llama.cpp server) keep
    theirs. Linux only: there each thread has a nice value of its own.
    """
    model = _turn_threads()[1]
    if nice <= 0 or not sys.platform.startswith("linux"):
        return 0
    reniced = 0
    for tid in map(int, os.listdir("/proc/self/task")):
        if tid in model:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
            reniced += 1
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:  # a sandbox that forbids it: the worker runs as before
            logger.warning("[BotJoin] could not lower the worker's threads' priority: %s", exc)
            break
    return reniced


class _StreamState(SileroOnnxModel):
    """One audio stream's Silero state over the shared session."""

    def __init__(self, session: ort.InferenceSession) -> None:  # noqa: D107 - no model of its own to load
        self.session = session
        self.sample_rates = [8000, 16000]
        self.reset_states()


# BS.1770's absolute gate (-70 LUFS) as the K-weighted mean square of a 400 ms block (full scale 1),
# and a bound on the power the K-weighting adds: its largest gain is +4 dB of high shelf, 2.60-2.69
# in power at 8-48 kHz as measured through Pipecat's `loudness` (a sine swept to Nyquist), and a
# filter's output energy from rest is at most its largest power gain times the input's.
ABSOLUTE_GATE_MEAN_SQUARE = 10 ** ((-70 + 0.691) / 10)
K_WEIGHTING_POWER_BOUND = 4.0


class GatedVolumeTracker(AudioVolumeTracker):
    """Pipecat's volume tracker, knowing a window under BS.1770's absolute gate without measuring it.

    Pipecat measures the last 400 ms's loudness for every VAD window (a C BS.1770 meter, ~57 us a
    window here: 4% of the worker's samples at 10 sessions, most of it on silence).
    Audio whose plain mean square, times the K-weighting's largest power gain, is under the gate
    measures -inf LUFS, which Pipecat's volume reads as 0: so it reads 0 here at the cost of a
    dot product (up to ~5 LSB of noise RMS at 16 bits). Anything louder is measured as before.
    """

    @property
    def volume(self) -> float:  # noqa: D102 - Pipecat's, with the shortcut
        if self._volume is None and self._under_absolute_gate():
            self._volume = 0.0
        return super().volume

    def _under_absolute_gate(self) -> bool:
        samples = np.frombuffer(self._buffer, dtype=np.int16).astype(np.float64)
        mean_square = float(np.dot(samples, samples)) / (len(samples) * 32768.0 ** 2)  # a full window
        return mean_square * K_WEIGHTING_POWER_BOUND < ABSOLUTE_GATE_MEAN_SQUARE


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """Pipecat's Silero VAD analyzer on the worker's one VAD session.

    With `silence_gate`, a window is not given to the model while the user is silent: when the
    last 400 ms measure below BS.1770's absolute gate (Pipecat's volume 0: a muted microphone, the
    browser's noise suppression between sentences, a quiet room) and the smoothed volume is under
    `min_volume`. Pipecat calls such a window quiet whatever the model says (speaking needs both
    the confidence and the volume), so the VAD's states are Pipecat's; what differs is the model's
    recurrent state, which is reset when the silence begins (as Pipecat resets it in clear
    non-speech every 2 s) instead of carried through it. The first sound lifts the 400 ms volume
    above 0 at once, so the model hears a sentence from its first window. A session spends most
    of its time listening to silence (the bot talks, the user thinks): at ~150 us a window, 31
    windows a second, that was the largest share of a session's CPU on the loop
    (docs/benchmarks.md, issue 14). On a noisy line (noise over the gate) the model hears every
    window, as before.
    """

    def __init__(self, *, sample_rate: int | None = None, params: Any = None, silence_gate: bool = False) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._volume_tracker = GatedVolumeTracker()
        self._model = _StreamState(vad_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._silence_gate = silence_gate
        self._volume_ahead: float | None = None  # the window's volume, measured before its confidence
        self._model_resting = False  # windows are being left out: the model was reset for the silence
        self._heard = 0  # bytes of audio so far: Pipecat's volume reads 0 until it has 400 ms
        self.windows_left_out = 0

    def voice_confidence(self, buffer: bytes) -> float:
        """Pipecat's confidence, or 0 for a window the model need not hear (see the class)."""
        if not self._silence_gate:
            return super().voice_confidence(buffer)
        # Pipecat measures the volume right after the confidence (`_run_analyzer`); measured first,
        # it decides whether the model runs, and `_get_smoothed_volume` hands it back unchanged.
        self._volume_ahead = VADAnalyzer._get_smoothed_volume(self, buffer)
        self._heard += len(buffer)
        if (self._heard < VOLUME_WINDOW_SECS * self.sample_rate * 2 or self._volume_tracker.volume > 0
                or self._volume_ahead >= self._params.min_volume):
            self._model_resting = False
            return super().voice_confidence(buffer)
        if not self._model_resting:
            self._model.reset_states()
            self._windows_since_reset = 0
            self._model_resting = True
        self._low_confidence_windows += 1
        self.windows_left_out += 1
        return 0.0

    def _get_smoothed_volume(self, audio: bytes) -> float:
        volume, self._volume_ahead = self._volume_ahead, None
        return volume if volume is not None else super()._get_smoothed_volume(audio)

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Pipecat's analysis, on the event loop instead of a thread of the analyzer's own.

        Pipecat gives each analyzer a one-thread executor and sends it every input frame: at 15
        sessions, 15 threads woken 25-50 times a second, each trip two GIL handoffs with the
        loop that carries every session's audio. A 40 ms frame costs ~150 us of Silero inference
        here (one ONNX thread, as Pipecat sets it) and the trip ~45 us more, for nothing: the
        loop runs it itself (docs/benchmarks.md). Audio that completes no window (three 20 ms
        frames in eight) only joins the buffer, and its state is the one already known (what
        `_run_analyzer` returns for it).
        """
        if len(self._vad_buffer) + len(buffer) < self._vad_frames_num_bytes:
            self._vad_buffer += buffer
            return self._vad_state
        return self._run_analyzer(buffer)


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """Pipecat's smart-turn v3 analyzer on the worker's one turn-model session."""

    def __init__(self, **kwargs: Any) -> None:
        BaseSmartTurn.__init__(self, **kwargs)
        self._log_data = False
        self._session = turn_session()

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        """The worker's turn-model threads, not one of this analyzer's own (see turn_executor)."""
        return turn_executor()
