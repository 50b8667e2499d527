"""What the bot keeps: the users' notes (its tool), and the registry of bot workers."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Note(models.Model):
    """A note the assistant keeps for a user through its notes tool."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_notes")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    session = models.ForeignKey("voicesessions.VoiceSession", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="notes")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class BotWorker(models.Model):
    """A running `manage.py runbotworker` process, as it advertises itself.

    The heartbeat is how the rest of the system learns a worker died: a worker
    whose heartbeat is older than VOICE_WORKER_DEAD_AFTER loses its sessions.
    """

    worker_id = models.CharField(max_length=120, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    control_url = models.CharField(max_length=300, help_text="Where servers reach this worker (signalling, control).")
    capacity = models.PositiveSmallIntegerField(default=2)
    active_sessions = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return self.worker_id

    @property
    def free_slots(self) -> int:
        return max(0, self.capacity - self.active_sessions)
