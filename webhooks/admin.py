"""The delivery log: every webhook, its answers, and a resend action."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .delivery import resend
from .models import WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "session", "url", "status", "attempts", "last_status_code",
                    "delivered_at"]
    list_filter = ["status", "kind", "last_status_code"]
    search_fields = ["id", "session__id", "url"]
    date_hierarchy = "created_at"
    actions = ["resend_deliveries"]
    fields = ["id", "kind", "session", "assistant", "url", "status", "attempts", "last_status_code", "last_error",
              "next_attempt_at", "lease_until", "created_at", "delivered_at", "body"]
    readonly_fields = fields

    @admin.display(description="body")
    def body(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    @admin.action(description="Resend the selected deliveries")
    def resend_deliveries(self, request, queryset) -> None:
        count = resend(queryset)
        self.message_user(request, f"{count} deliveries queued to be sent again.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the log is read-only; resend is the one thing to do
