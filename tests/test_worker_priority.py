"""What a worker does for its sessions' latency on a busy core (issue 14): the turn model's
threads run ahead of the rest (voicebot/sharedmodels.py), and the user's audio stops after the
user aggregator (voicebot/pipeline.py UserAudioEnd)."""
from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame, TextFrame
from pipecat.tests.utils import run_test

from voicebot.pipeline import UserAudioEnd
from voicebot.sharedmodels import SharedSmartTurnAnalyzer, turn_executor
from voicebot.worker import HOSTED_LONG_FRAMES_LOAD, HOSTED_LOOP_NICE, long_frames_load, loop_nice

# Run in a child: renicing is for good, and this test process must keep its priority.
_PRIORITIES = """
import json, os, threading
from voicebot.sharedmodels import _turn_threads, prioritise_turn_model
before = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
before.start()
reniced = prioritise_turn_model(7)
after = {}
later = threading.Thread(target=lambda: after.update(nice=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
later.start(); later.join()
nice = lambda tid: os.getpriority(os.PRIO_PROCESS, tid)
print(json.dumps({"reniced": reniced, "model": [nice(tid) for tid in _turn_threads()[1]],
                  "loop": nice(threading.get_native_id()), "before": nice(before.native_id),
                  "later": after["nice"]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_turn_models_threads_keep_their_priority_and_every_other_thread_runs_below_it():
    out = subprocess.run([sys.executable, "-c", _PRIORITIES], capture_output=True, text=True, timeout=60,
                         check=True, env={"DJANGO_SETTINGS_MODULE": "voiceproject.settings", "PATH": "/usr/bin:/bin"})
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["model"] and all(n == 0 for n in seen["model"])  # one thread per usable core, untouched
    assert (seen["loop"], seen["before"], seen["later"]) == (7, 7, 7)  # started before or after: below it
    assert seen["reniced"] >= 2


def test_a_worker_whose_models_are_all_hosted_lowers_its_threads_and_one_running_models_does_not(settings):
    hosted = SimpleNamespace(runs_models=False)
    local = SimpleNamespace(runs_models=True)
    settings.VOICE_WORKER_LOOP_NICE = None
    assert (loop_nice(hosted), loop_nice(local)) == (HOSTED_LOOP_NICE, 0)
    settings.VOICE_WORKER_LOOP_NICE = 3  # the setting wins either way
    assert (loop_nice(hosted), loop_nice(local)) == (3, 3)


def test_only_a_worker_whose_models_are_all_hosted_takes_longer_input_frames_when_busy(settings):
    """A local model's threads load the cores, not the loop: its one or two users keep 20 ms frames."""
    hosted, local = SimpleNamespace(runs_models=False), SimpleNamespace(runs_models=True)
    settings.VOICE_INPUT_LONG_FRAMES_LOAD = None
    assert (long_frames_load(hosted), long_frames_load(local)) == (HOSTED_LONG_FRAMES_LOAD, math.inf)
    settings.VOICE_INPUT_LONG_FRAMES_LOAD = 0.7  # the setting wins either way
    assert (long_frames_load(hosted), long_frames_load(local)) == (0.7, 0.7)


def test_every_sessions_turn_analyzer_runs_on_the_workers_turn_threads_even_after_a_cleanup():
    """Pipecat shuts an analyzer's own thread down on cleanup; the worker's must outlive it."""
    speech = (np.sin(np.linspace(0, 2000, 16000 * 2)) * 8000).astype("<i2").tobytes()

    async def judge(analyzer: SharedSmartTurnAnalyzer) -> str:
        analyzer.set_sample_rate(16000)
        analyzer.append_audio(speech, is_speech=True)
        state, _ = await analyzer.analyze_end_of_turn()
        return state.name

    async def main() -> list[str]:
        first, second = SharedSmartTurnAnalyzer(), SharedSmartTurnAnalyzer()
        assert first._model_executor is second._model_executor is turn_executor()
        verdicts = [await judge(first)]
        await first.cleanup()
        verdicts.append(await judge(second))  # the threads still serve the other session
        return verdicts

    assert all(v in ("COMPLETE", "INCOMPLETE") for v in asyncio.run(main()))
    assert turn_executor().submit(int, "7").result(timeout=10) == 7  # still running


def test_the_users_audio_goes_no_further_than_the_user_aggregator_and_everything_else_does():
    audio = InputAudioRawFrame(audio=bytes(640), sample_rate=16000, num_channels=1)
    down, _up = asyncio.run(run_test(UserAudioEnd(), frames_to_send=[audio, TextFrame("hello")]))
    assert [type(f) for f in down] == [TextFrame]
