"""The worker's event loop (voicebot/eventloop.py, VOICE_WORKER_EVENT_LOOP)."""
from __future__ import annotations

import asyncio
import warnings

import pytest
import uvloop
from django.core.exceptions import ImproperlyConfigured

from voicebot import eventloop


async def _loop_kind() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


@pytest.mark.parametrize("chosen", ["uvloop", "asyncio"])
def test_the_worker_runs_on_the_loop_it_is_given(settings, chosen: str) -> None:
    settings.VOICE_WORKER_EVENT_LOOP = chosen
    assert eventloop.run(_loop_kind()) == chosen
    assert uvloop.Loop.__module__.startswith("uvloop")


def test_an_unknown_loop_is_refused_by_name_and_nothing_is_left_unawaited(settings) -> None:
    settings.VOICE_WORKER_EVENT_LOOP = "trio"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        with pytest.raises(ImproperlyConfigured, match="VOICE_WORKER_EVENT_LOOP is 'trio'"):
            eventloop.run(_loop_kind())
