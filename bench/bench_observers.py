"""What Pipecat's observers cost per audio frame (issue 14: our CPU against bare Pipecat's).

Every frame a processor handles is reported to the worker's observer proxy, once when it
is processed and once when it is first pushed, and the proxy queues each report to every
observer's own task. With 50 audio frames a second through ten processors, each observer
is woken thousands of times a second, whatever it does with the frame. This bench pushes
`--frames` 20 ms audio frames through a pipeline of `--processors` pass-through processors
and prints this process's CPU per frame for:

- no observers (Pipecat's turn tracking off);
- bare Pipecat's defaults (its turn-tracking observer and RTVI, as `bench/bare_pipecat.py` runs);
- the observers a session had before (our event forwarder and call monitor, each its own
  observer, and Pipecat's turn tracking);
- the session's now: the two behind one observer (`voicebot.observers.SessionObserver`),
  turn tracking off.

    .venv/bin/python bench/bench_observers.py [--frames 3000] [--processors 8] [--repeat 3]

The observers here do nothing with a frame: the figures are the mechanism's cost alone.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def variants() -> dict[str, Callable[[], dict[str, Any]]]:
    from pipecat.observers.base_observer import BaseObserver

    from voicebot.observers import SessionObserver

    def idle() -> BaseObserver:
        return BaseObserver(observe_every_push=False)

    return {
        "no observers": lambda: {"observers": [], "enable_turn_tracking": False, "enable_rtvi": False},
        "bare Pipecat's defaults (turn tracking, RTVI)": lambda: {"observers": []},
        "before: forwarder + monitor + turn tracking": lambda: {"observers": [idle(), idle()], "enable_rtvi": False},
        "now: one SessionObserver, no turn tracking": lambda: {
            "observers": [SessionObserver([idle(), idle()])], "enable_turn_tracking": False, "enable_rtvi": False},
    }


async def one_run(frames: int, processors: int, worker_kwargs: dict[str, Any]) -> float:
    """CPU seconds of this process for `frames` audio frames through the pipeline."""
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import WorkerRunner
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    done = asyncio.Event()

    class Counter(FrameProcessor):
        seen = 0

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                Counter.seen += 1
                if Counter.seen == frames:
                    done.set()
            await self.push_frame(frame, direction)

    class Passthrough(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)

    pipeline = Pipeline([*(Passthrough() for _ in range(processors)), Counter()])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000), idle_timeout_secs=None,
                            **worker_kwargs)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    pcm = b"\x01\x00" * 320  # 20 ms at 16 kHz
    await asyncio.sleep(0)
    start = time.process_time()
    for _ in range(frames):
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=16000, num_channels=1))
        # As a call's frames come, 20 ms apart: each finds every task asleep, and wakes it.
        await asyncio.sleep(0.001)
    await asyncio.wait_for(done.wait(), timeout=300)
    used = time.process_time() - start
    await worker.queue_frame(EndFrame())
    await asyncio.wait_for(running, timeout=60)
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--processors", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    print(f"{args.frames} audio frames of 20 ms through {args.processors} pass-through processors, "
          f"median of {args.repeat} runs; CPU of this process")
    print(f"| observers | CPU per frame (us) | CPU for one session's 50 frames/s (% of a core) |")
    print("|---|---|---|")
    for name, make in variants().items():
        cpu = [asyncio.run(one_run(args.frames, args.processors, make())) for _ in range(args.repeat)]
        per_frame = statistics.median(cpu) / args.frames
        print(f"| {name} | {per_frame * 1e6:.0f} | {per_frame * 50 * 100:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
