"""Can the voice workers serve an assistant's models? The join's early check.

Each worker advertises the providers it runs per stage (BotWorker.offers: a hosted
provider on every worker, "local" only where the worker loaded that model). A join
whose assistant names a provider that no live worker offers would only fail once a
worker claimed it, so it is refused at once with a 422. With no live worker at all
nothing is known yet (a worker may be starting): the join is queued and a worker that
cannot serve it says so with a voice.error.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from assistants.models import AssistantRecord
from assistants.providers import STAGE_NAMES, STAGES, voice_fits

from .models import BotWorker


@dataclass(frozen=True)
class Unservable:
    """Why a join cannot be served: the field at fault and what to tell the caller."""

    field: str
    message: str


def live_offers() -> list[dict[str, list[str]]]:
    """What each live worker offers (only workers that advertise it: older ones say nothing)."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.VOICE_WORKER_DEAD_AFTER)
    rows = BotWorker.objects.filter(stopped_at__isnull=True, heartbeat_at__gte=cutoff).values_list("offers", flat=True)
    return [offers for offers in rows if offers]


def unservable(assistant: AssistantRecord | None, *, voice: str = "") -> Unservable | None:
    """The first reason the assistant's models (and a join's `voice`) cannot be served, or None."""
    if assistant is None:
        return None
    endpoints: dict[str, Any] = {stage: getattr(assistant, f"{stage}_endpoint") for stage in STAGES}
    for stage, endpoint in endpoints.items():
        if endpoint is not None and not endpoint.enabled:  # the row was just read with the assistant
            return Unservable("assistant", f"The assistant's {STAGE_NAMES[stage]} ({endpoint.name}) is turned off.")
    tts = endpoints["tts"]
    if voice and tts is not None and not voice_fits(tts.provider, voice):
        return Unservable("voice", f"'{voice}' is not a {tts.provider} voice id.")
    offers = live_offers()
    if not offers:
        return None
    for stage, endpoint in endpoints.items():
        provider = endpoint.provider if endpoint is not None else None
        if provider and not any(provider in worker.get(stage, ()) for worker in offers):
            return Unservable("assistant", f"No voice worker runs the assistant's {STAGE_NAMES[stage]} "
                                           f"({endpoint.name}: {provider}).")
    return None
