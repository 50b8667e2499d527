"""A cheaper outbound audio path for the embedded WebRTC transport (issue 14).

Profiling a worker at 5 sessions (docs/benchmarks.md, "Where a session's CPU goes") put
most of a session's CPU in the media path that Pipecat's SmallWebRTC transport and aiortc
run for every outgoing audio frame. Two costs there are avoidable without changing what
the browser hears:

- aiortc measures each outgoing frame's level for the RTP audio-level header extension
  (RFC 6465) in a pure-Python loop over its samples: 12-18% of the worker's samples in
  that profile. `audio_level_dbov` computes the same integer with numpy.
- Pipecat's `RawAudioTrack` hands aiortc 10 ms frames, but aiortc's Opus encoder packs
  20 ms, so every other frame goes through the track, the sender's loop and a thread-pool
  hop for nothing. `WholeOpusFrameTrack` hands over 20 ms frames: one of each per packet.

Neither library offers these as settings, so `install()` swaps them in where they are
looked up at run time (aiortc's `rtp.compute_audio_level_dbov`, the transport module's
`RawAudioTrack`). It is idempotent; a session calls it before it builds its transport.
`tests/test_mediapath.py` holds both to the originals' output.
"""
from __future__ import annotations

import asyncio
import math

import numpy as np
from av import AudioFrame
from pipecat.transports.smallwebrtc.transport import RawAudioTrack

FRAME_MS = 20  # aiortc's Opus encoder packs 20 ms (960 samples at 48 kHz) a packet
MIN_AUDIO_LEVEL = -127  # dBov, RFC 6465's floor
MAX_SAMPLE = 32767


def audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A's level of an s16 frame in -dBov, as aiortc computes it.

    The sum of squares is taken in int64, exactly as aiortc's Python loop sums whole
    numbers, so the result is the same integer (aiortc divides by the per-channel
    sample count even for stereo; so does this).
    """
    samples = np.frombuffer(frame.planes[0], dtype=np.int16).astype(np.int64)
    energy = int(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * MAX_SAMPLE * MAX_SAMPLE))
    if rms <= 0:
        return MIN_AUDIO_LEVEL
    return round(min(max(20 * math.log10(rms), MIN_AUDIO_LEVEL), 0))


class WholeOpusFrameTrack(RawAudioTrack):
    """Pipecat's output track, pacing 20 ms frames instead of 10 ms.

    Pipecat's track names its frame size `_samples_per_10ms`; only the size changes here.
    Audio whose length is a whole number of 10 ms but not of 20 ms (Pipecat's output
    transport sends 40 ms chunks, so only an odd caller would) is padded with up to 10 ms
    of silence rather than refused.
    """

    def __init__(self, sample_rate: int, auto_silence: bool = True) -> None:
        super().__init__(sample_rate, auto_silence)
        self._samples_per_10ms = sample_rate * FRAME_MS // 1000
        self._bytes_per_10ms = self._samples_per_10ms * 2

    def add_audio_bytes(self, audio_bytes: bytes) -> asyncio.Future:
        ten_ms = self._bytes_per_10ms // 2
        if len(audio_bytes) % self._bytes_per_10ms == ten_ms:  # whole 10 ms, not whole 20 ms
            audio_bytes += bytes(ten_ms)
        return super().add_audio_bytes(audio_bytes)  # anything else is refused, as Pipecat's track does


def install() -> None:
    """Use the cheaper level meter and 20 ms output frames in this process."""
    import aiortc.rtp
    import pipecat.transports.smallwebrtc.transport as smallwebrtc

    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov
    smallwebrtc.RawAudioTrack = WholeOpusFrameTrack
