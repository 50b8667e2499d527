"""Reactions to changes: a deactivated user loses voice at once; a deleted session, its recording."""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import RoomState, VoiceRoom, VoiceSession
from .teardown import teardown_room

logger = logging.getLogger("voicesessions.signals")


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="voicesessions.end_voice_of_inactive_users")
def end_voice_of_inactive_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """An admin set is_active=False: end the user's sessions, free their bot and delete their room.

    After commit, because the teardown calls the room provider and tells the
    bot's worker; room tokens are refused from then on (the offer view checks
    is_active on every use).
    """
    if instance.is_active:
        return
    room_ids = list(VoiceRoom.objects.filter(user=instance, state=RoomState.LIVE).values_list("pk", flat=True))
    if not room_ids:
        return

    def tear_down() -> None:
        for room_id in room_ids:
            teardown_room(room_id, reason="user_deactivated")
        logger.warning("[VoiceSession] user=%s deactivated: voice room torn down", instance.pk)

    transaction.on_commit(tear_down)


@receiver(post_delete, sender=VoiceSession, dispatch_uid="voicesessions.delete_recording_with_session")
def delete_recording_with_session(sender: Any, instance: VoiceSession, **kwargs: Any) -> None:
    """A deleted session takes its recording with it (after commit: a rolled-back delete keeps it)."""
    if instance.recording:
        name, storage = instance.recording.name, instance.recording.storage
        transaction.on_commit(lambda: storage.delete(name))
