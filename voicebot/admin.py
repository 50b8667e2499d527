from django.contrib import admin

from .models import BotWorker, Note


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "created_at"]
    search_fields = ["title", "body", "user__username"]


@admin.register(BotWorker)
class BotWorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "hostname", "pid", "capacity", "active_sessions", "heartbeat_at", "stopped_at"]
    readonly_fields = ["worker_id", "hostname", "pid", "started_at", "heartbeat_at", "stopped_at"]
