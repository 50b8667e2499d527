"""Deterministic percentage rollout of Pipecat voice per assistant.

An assistant's bucket (0-9999) is a stable hash of its id, so the same
assistant always gets the same answer for a given percentage, and raising the
percentage only ever adds assistants: bucket < threshold is monotonic.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .models import AssistantRecord, RolloutOverride, VoiceRollout

BUCKETS = 10_000  # 0.01 % resolution, so small percentages still spread evenly


def bucket_for(assistant_id: int | str) -> int:
    """Stable bucket in [0, BUCKETS) for an assistant id.

    sha256 rather than hash(): Python's str hash is salted per process.
    """
    digest = hashlib.sha256(f"voice-rollout:{assistant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(assistant_id: int | str, percentage: int) -> bool:
    """True when the assistant falls inside the first `percentage` % of buckets."""
    return bucket_for(assistant_id) < percentage * (BUCKETS // 100)


@dataclass(frozen=True)
class RolloutDecision:
    enabled: bool
    reason: str
    bucket: int
    percentage: int


def decide(assistant: AssistantRecord, rollout: VoiceRollout | None = None) -> RolloutDecision:
    """Does this assistant use Pipecat voice sessions?

    Order: master switch off -> off; assistant's voiceSessionConfig.enabled false
    -> off; override on/off -> that; else the percentage bucket.
    """
    rollout = rollout or VoiceRollout.load()
    bucket = bucket_for(assistant.pk)
    pct = rollout.percentage

    def result(enabled: bool, reason: str) -> RolloutDecision:
        return RolloutDecision(enabled=enabled, reason=reason, bucket=bucket, percentage=pct)

    if not rollout.use_pipecat_voice:
        return result(False, "global_switch_off")
    if not assistant.voice_enabled:
        return result(False, "assistant_disabled")
    if assistant.rollout_override == RolloutOverride.FORCE_ON:
        return result(True, "forced_on")
    if assistant.rollout_override == RolloutOverride.FORCE_OFF:
        return result(False, "forced_off")
    if in_rollout(assistant.pk, pct):
        return result(True, "in_rollout")
    return result(False, "outside_rollout")


def set_percentage(percentage: int, *, user=None) -> VoiceRollout:
    """Change the rollout percentage (0 is the rollback), recorded in the admin's history.

    Raises django.core.exceptions.ValidationError when the percentage is out of 0-100.
    """
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.db import transaction

    with transaction.atomic():
        rollout = VoiceRollout.objects.select_for_update().get(pk=VoiceRollout.load().pk)
        previous = rollout.percentage
        rollout.percentage = percentage
        rollout.updated_by = user
        rollout.full_clean()
        rollout.save()
        if user is not None:
            LogEntry.objects.log_actions(user.pk, [rollout], CHANGE, single_object=True,
                                         change_message=f"Rollout percentage {previous}% -> {percentage}%")
    return rollout
