"""The worker's one VAD and one turn model (voicebot/sharedmodels.py): every session gets the
answers Pipecat's own per-session models give, and two sessions speaking at once never mix."""
from __future__ import annotations

import asyncio
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer

from voicebot.sharedmodels import SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer

RATE = 16000
WINDOW = 512 * 2  # bytes of one Silero window at 16 kHz


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw),
                    "What is the weather like in Paris today?"], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav), "pad", "0.5", "0.5"],
                   check=True)
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes())


def _windows(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + WINDOW] for i in range(0, len(pcm) - WINDOW + 1, WINDOW)]


def _confidences(analyzer, pcm: bytes) -> list[float]:
    analyzer.set_sample_rate(RATE)
    return [float(np.asarray(analyzer.voice_confidence(w)).ravel()[0]) for w in _windows(pcm)]


def test_the_shared_vad_hears_what_pipecats_own_hears(speech):
    own = _confidences(SileroVADAnalyzer(), speech)
    shared = _confidences(SharedSileroVADAnalyzer(), speech)
    assert max(own) > 0.9 and min(own[:5]) < 0.1  # speech, after half a second of silence
    assert np.allclose(own, shared, atol=1e-5)


def test_20_ms_frames_give_pipecats_vad_states_on_the_loop_analysing_only_whole_windows(speech):
    """The states Pipecat's own analyzer gives frame by frame, with no thread of its own, and the
    analysis run only for a window's worth."""
    frames = [speech[i:i + 640] for i in range(0, len(speech) - 639, 640)]  # 20 ms, as the transport reads

    async def states(analyzer) -> tuple[list, int]:
        analyzer.set_sample_rate(RATE)
        trips = 0
        run = analyzer._run_analyzer

        def counted(buffer: bytes):
            nonlocal trips
            trips += 1
            return run(buffer)

        analyzer._run_analyzer = counted
        return [await analyzer.analyze_audio(frame) for frame in frames], trips

    own, own_trips = asyncio.run(states(SileroVADAnalyzer()))
    shared, shared_trips = asyncio.run(states(SharedSileroVADAnalyzer()))
    assert shared == own and len(set(own)) >= 3  # quiet, starting, speaking, stopping: not a constant
    assert own_trips == len(frames)
    assert shared_trips == len(frames) * 640 // WINDOW  # one a window: 5 of every 8 frames
    shared_analyzer = SharedSileroVADAnalyzer()
    asyncio.run(states(shared_analyzer))
    assert not shared_analyzer._executor._threads  # Pipecat's executor never started its thread: the loop ran it


def _turns(states: list) -> list[tuple[int, str]]:
    """Where the user's speech was heard to start and to end: (frame, QUIET / SPEAKING), as the
    pipeline acts on them (a STARTING that fell back, a STOPPING that recovered, acts on nothing)."""
    turns, speaking = [], False
    for i, state in enumerate(states):
        if state.name == "SPEAKING" and not speaking:
            turns.append((i, "SPEAKING"))
            speaking = True
        elif state.name == "QUIET" and speaking:
            turns.append((i, "QUIET"))
            speaking = False
    return turns


@pytest.fixture(scope="module")
def three_sentences(tmp_path_factory) -> bytes:
    """Three questions with 1.5 s of silence after each: a user who waits for the answers."""
    folder = tmp_path_factory.mktemp("sentences")
    pcm = b""
    for n, text in enumerate(["What is the weather like in Paris today?", "And tomorrow, will it rain?", "Thanks."]):
        raw, wav = folder / f"raw{n}.wav", folder / f"s{n}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav), "pad", "0.5", "1.5"],
                       check=True)
        with wave.open(str(wav)) as w:
            pcm += w.readframes(w.getnframes())
    return pcm


@pytest.mark.parametrize("noise", [0, 3, 300], ids=["digital silence", "near silence", "a noisy line"])
def test_the_vad_left_out_of_the_users_silence_hears_the_same_turns(three_sentences, noise):
    """With the silence gate, the model is not run on silence, and every sentence still starts and ends
    on the frame Pipecat's own analyzer gives; on a line with noise it runs on every window, as before."""
    pcm = three_sentences
    if noise:
        samples = np.frombuffer(pcm, dtype=np.int16) + np.random.default_rng(3).normal(0, noise, len(pcm) // 2)
        pcm = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    frames = [pcm[i:i + 1280] for i in range(0, len(pcm) - 1279, 1280)]  # 40 ms, as a busy worker reads

    async def states(analyzer) -> list:
        analyzer.set_sample_rate(RATE)
        return [await analyzer.analyze_audio(frame) for frame in frames]

    own = asyncio.run(states(SileroVADAnalyzer()))
    gated = SharedSileroVADAnalyzer(silence_gate=True)
    heard = asyncio.run(states(gated))
    assert [state for _, state in _turns(own)] == ["SPEAKING", "QUIET"] * 3
    assert _turns(heard) == _turns(own)
    windows = len(frames) * 1280 // WINDOW
    if noise > 100:  # -40 dBFS of noise is over the absolute gate: the model hears it all
        assert gated.windows_left_out == 0 and heard == own
    else:  # the 1.5 s after each sentence, less the 400 ms the volume still hears it
        assert gated.windows_left_out > windows * 0.35


def test_two_sessions_speaking_at_once_each_keep_their_own_vad_state(speech):
    """Windows of two streams interleaved through the one model give each stream what it gives alone."""
    noise = (np.random.default_rng(7).normal(0, 300, len(speech) // 2)).astype("<i2").tobytes()
    alone_speech = _confidences(SharedSileroVADAnalyzer(), speech)
    alone_noise = _confidences(SharedSileroVADAnalyzer(), noise)
    a, b = SharedSileroVADAnalyzer(), SharedSileroVADAnalyzer()
    a.set_sample_rate(RATE)
    b.set_sample_rate(RATE)
    together_speech, together_noise = [], []
    for wa, wb in zip(_windows(speech), _windows(noise)):
        together_speech.append(float(np.asarray(a.voice_confidence(wa)).ravel()[0]))
        together_noise.append(float(np.asarray(b.voice_confidence(wb)).ravel()[0]))
    assert np.allclose(together_speech, alone_speech, atol=1e-5)
    assert np.allclose(together_noise, alone_noise, atol=1e-5)
    assert a._model.session is b._model.session  # one model for both


def test_the_shared_turn_model_judges_a_turn_as_pipecats_own_does(speech):
    audio = np.frombuffer(speech, dtype=np.int16).astype(np.float32) / 32768.0
    own = LocalSmartTurnAnalyzerV3()
    shared, other = SharedSmartTurnAnalyzer(), SharedSmartTurnAnalyzer()
    for analyzer in (own, shared):
        analyzer.set_sample_rate(RATE)
    expected = own._predict_endpoint(audio)
    assert shared._predict_endpoint(audio) == pytest.approx(expected)
    assert shared._session is other._session and shared._session is not own._session


@pytest.mark.parametrize("rate", [8000, 16000])
def test_the_volume_under_the_absolute_gate_is_known_without_measuring_it_and_is_pipecats(rate):
    """GatedVolumeTracker reads 0 where BS.1770's meter would measure -inf, and measures the rest:
    the same volume as Pipecat's tracker for quiet to loud noise and tones up to Nyquist, where the
    K-weighting adds the most."""
    from pipecat.audio.volume import AudioVolumeTracker

    from voicebot.sharedmodels import GatedVolumeTracker

    n = int(0.4 * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(5)
    shapes = {"noise": rng.normal(0, 1, n), "tone near Nyquist": np.sin(2 * np.pi * (rate / 2 - 80) * t) * np.sqrt(2),
              "low tone": np.sin(2 * np.pi * 120 * t) * np.sqrt(2), "digital silence": np.zeros(n)}
    skipped = measured = 0
    for name, shape in shapes.items():
        for rms in (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 14, 20, 40, 200, 3000):  # in LSB of 16 bits
            pcm = np.clip(np.round(shape * rms), -32768, 32767).astype("<i2").tobytes()
            own, gated = AudioVolumeTracker(), GatedVolumeTracker()
            own.update(pcm, rate)
            gated.update(pcm, rate)
            shortcut = gated._under_absolute_gate()
            assert gated.volume == own.volume, (name, rms, shortcut)
            skipped += shortcut
            measured += not shortcut and own.volume > 0
    assert skipped >= 15 and measured >= 15  # both sides of the gate were reached
