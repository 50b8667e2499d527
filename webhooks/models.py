"""The webhook outbox: one row per event to deliver, written in the transaction of the event itself."""
from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up; resend from admin)"


class WebhookKind(models.TextChoices):
    SESSION_STATUS = "session.status", "Session status"
    TRANSCRIPT = "transcript", "Final transcript"
    TOOL_CALL = "tool.call", "Tool call"
    TOOL_RESULT = "tool.result", "Tool result"
    SESSION_END = "session.end", "Session end"
    END_OF_CALL_REPORT = "end-of-call-report", "End-of-call report"


class WebhookDelivery(models.Model):
    """One webhook event and its delivery, at least once: a row is written with the event it
    reports (so a crash cannot lose one), and stays until a 2xx answer or its last attempt."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False,
                          help_text="Sent as the event's id: receivers drop a repeat they already have.")
    kind = models.CharField(max_length=24, choices=WebhookKind.choices)
    session = models.ForeignKey("voicesessions.VoiceSession", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="webhook_deliveries")
    assistant = models.ForeignKey("assistants.AssistantRecord", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+", help_text="Whose server URL and secret; empty: the global one.")
    url = models.CharField(max_length=500)
    payload = models.JSONField(default=dict)
    prepared = models.BooleanField(default=True, help_text="False: an end-of-call report still to be written.")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker is delivering it until then.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_due")]
        constraints = [models.CheckConstraint(condition=models.Q(status__in=DeliveryStatus.values),
                                              name="webhook_status_valid")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"
