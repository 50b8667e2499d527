"""The cheaper outbound audio path (voicebot/mediapath.py) against what it replaces."""
from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest
from aiortc import rtp
from aiortc.codecs.opus import OpusEncoder
from av import AudioFrame
from pipecat.transports.smallwebrtc.transport import RawAudioTrack

from voicebot import mediapath
from voicebot.mediapath import WholeOpusFrameTrack, audio_level_dbov

ORIGINAL_LEVEL = rtp.compute_audio_level_dbov  # aiortc's own, captured before any install()


def frame(samples: np.ndarray, layout: str = "mono", rate: int = 24000) -> AudioFrame:
    made = AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout=layout)
    made.sample_rate = rate
    return made


def test_the_level_meter_gives_aiortcs_own_figure_for_every_kind_of_frame() -> None:
    rng = np.random.default_rng(7)
    frames = [frame(np.zeros(480)), frame(np.full(480, 32767)), frame(np.full(480, -32768)),
              frame(np.ones(480)), frame(np.array([1] + [0] * 479))]
    for scale in (3, 30, 300, 3000, 30000):  # noise from near silence to near full scale
        frames.append(frame(np.clip(rng.normal(0, scale, 480), -32768, 32767)))
    tone = (8000 * np.sin(np.arange(960) * 2 * np.pi * 440 / 48000)).astype(np.int16)
    frames.append(frame(np.repeat(tone[:480], 2), layout="stereo", rate=48000))  # interleaved
    levels = [audio_level_dbov(f) for f in frames]
    assert levels == [ORIGINAL_LEVEL(f) for f in frames]
    assert levels[0] == -127 and levels[1] == 0  # the floor and full scale, not a constant
    assert len(set(levels)) >= 7


def test_the_output_track_paces_20_ms_frames_of_the_audio_it_was_given() -> None:
    async def run() -> None:
        track = WholeOpusFrameTrack(sample_rate=24000)
        audio = np.arange(24 * 80, dtype=np.int16)  # 80 ms, as two of Pipecat's 40 ms chunks
        done = [track.add_audio_bytes(audio[:960].tobytes()), track.add_audio_bytes(audio[960:].tobytes())]
        frames = [await track.recv() for _ in range(4)]
        assert all(f.samples == 480 and f.sample_rate == 24000 for f in frames)
        assert [f.pts for f in frames] == [0, 480, 960, 1440]
        assert np.concatenate([f.to_ndarray()[0] for f in frames]).tolist() == audio.tolist()
        assert all(future.done() for future in done)
        silence = await track.recv()  # nothing queued: 20 ms of silence, still paced
        assert silence.samples == 480 and silence.pts == 1920 and not silence.to_ndarray().any()

    asyncio.run(run())


def test_audio_of_an_odd_10_ms_is_padded_not_refused() -> None:
    async def run() -> None:
        track = WholeOpusFrameTrack(sample_rate=16000)
        sound = np.full(160 * 3, 1000, dtype=np.int16)  # 30 ms
        future = track.add_audio_bytes(sound.tobytes())
        frames = [await track.recv(), await track.recv()]
        heard = np.concatenate([f.to_ndarray()[0] for f in frames])
        assert heard[:480].tolist() == sound.tolist() and not heard[480:].any() and len(heard) == 640
        assert future.done()
        for odd in (100, 400, 500):  # not a whole 10 ms (320 bytes at 16 kHz): refused, as Pipecat's track does
            with pytest.raises(ValueError):
                track.add_audio_bytes(bytes(odd))

    asyncio.run(run())


def test_aiortc_packs_one_opus_packet_per_20_ms_frame_where_10_ms_frames_need_two_calls() -> None:
    tone = (8000 * np.sin(np.arange(4800) * 2 * np.pi * 440 / 24000)).astype(np.int16)

    def payloads(size: int) -> list[list[bytes]]:
        encoder, out = OpusEncoder(), []
        for start in range(0, len(tone), size):
            made = frame(tone[start:start + size])
            made.pts, made.time_base = start, Fraction(1, 24000)
            out.append(encoder.encode(made)[0])
        return out

    # After the resampler's first buffering, 20 ms frames give a packet a call and Pipecat's
    # 10 ms frames give one every other call: twice the track and sender work per packet.
    assert [len(packets) for packets in payloads(480)[1:]] == [1] * 9
    assert [len(packets) for packets in payloads(240)[2:]] == [1, 0] * 9


def test_install_puts_both_where_the_transport_and_the_sender_look_them_up() -> None:
    import pipecat.transports.smallwebrtc.transport as smallwebrtc

    try:
        mediapath.install()
        mediapath.install()  # idempotent
        assert smallwebrtc.RawAudioTrack is WholeOpusFrameTrack
        assert rtp.compute_audio_level_dbov is audio_level_dbov
    finally:
        smallwebrtc.RawAudioTrack = RawAudioTrack
        rtp.compute_audio_level_dbov = ORIGINAL_LEVEL
