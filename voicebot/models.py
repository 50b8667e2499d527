"""What the bot keeps: the users' notes (its tool). The worker registry is voicesessions' (BotWorker)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .notetitle import MAX_TITLE


class Note(models.Model):
    """A note the assistant keeps for a user through its notes tool."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_notes")
    title = models.CharField(max_length=MAX_TITLE)
    body = models.TextField(blank=True)
    session = models.ForeignKey("voicesessions.VoiceSession", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="notes")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title
