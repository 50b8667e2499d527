"""One Pipecat observer for a session's own observers (the event forwarder, the call monitor).

Pipecat's worker reports every frame each processor handles to every observer, twice (as
it is processed and as it is pushed), through a queue and a task per observer: each
observer costs thousands of task wake-ups a second of a session's audio, whatever it
does with the frames (`bench/bench_observers.py`). Behind one observer, a session's
observers cost one queue and one wake-up per report, and the reports of frames being
processed, which none of them reads, reach none of them.
"""
from __future__ import annotations

from collections.abc import Sequence

from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.utils.asyncio.task_manager import BaseTaskManager


class SessionObserver(BaseObserver):
    """Tells each of `observers` of a frame's first push, in order, in one task.

    The observers must be quick (they queue their slow work elsewhere, as the forwarder
    does its storage): one that awaited long would hold up the next one's view.
    """

    def __init__(self, observers: Sequence[BaseObserver]) -> None:
        super().__init__(observe_every_push=False)
        if any(observer.observe_every_push for observer in observers):
            # A first push is all this observer is told of: one wanting every hop would miss most.
            raise ValueError("SessionObserver only carries observers of a frame's first push")
        self.observers = tuple(observers)

    async def setup(self, task_manager: BaseTaskManager) -> None:
        await super().setup(task_manager)
        for observer in self.observers:
            await observer.setup(task_manager)

    async def cleanup(self) -> None:
        await super().cleanup()
        for observer in self.observers:
            await observer.cleanup()

    async def on_pipeline_started(self) -> None:
        for observer in self.observers:
            await observer.on_pipeline_started()

    async def on_push_frame(self, data: FramePushed) -> None:
        for observer in self.observers:
            await observer.on_push_frame(data)
