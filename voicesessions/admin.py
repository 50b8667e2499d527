"""Admin for rooms, sessions (with their event timeline) and bot jobs."""
from django.contrib import admin

from .models import BotJob, SessionEvent, VoiceRoom, VoiceSession


@admin.register(VoiceRoom)
class VoiceRoomAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "provider", "state", "privacy", "last_activity_at", "teardown_at", "expires_at"]
    list_filter = ["provider", "state", "privacy"]
    search_fields = ["name", "user__username", "user__email"]
    readonly_fields = ["name", "created_at", "torn_down_at"]


class SessionEventInline(admin.TabularInline):
    model = SessionEvent
    fields = ["created_at", "type", "payload"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VoiceSession)
class VoiceSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "assistant", "status", "voice_only", "created_at", "ended_at", "end_reason"]
    list_filter = ["status", "voice_only", "assistant"]
    search_fields = ["id", "user__username", "assistant__slug", "assistant__name"]
    readonly_fields = ["id", "status", "created_at", "started_at", "ended_at", "ends_at", "end_reason",
                       "bot_worker_id", "pause_reason"]
    inlines = [SessionEventInline]
    date_hierarchy = "created_at"


@admin.register(BotJob)
class BotJobAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "status", "attempts", "worker_id", "created_at", "claimed_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "worker_id", "session__id"]
    readonly_fields = ["id", "created_at", "claimed_at", "finished_at"]
