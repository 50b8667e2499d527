"""Admin for rooms, sessions (their history: timeline, transcript, JSON export) and bot jobs."""
from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import history
from .models import BotJob, BotWorker, OpsEvent, SessionEvent, VoiceRoom, VoiceSession


@admin.register(VoiceRoom)
class VoiceRoomAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "provider", "state", "privacy", "last_activity_at", "teardown_at", "expires_at"]
    list_filter = ["provider", "state", "privacy"]
    search_fields = ["name", "user__username", "user__email"]
    readonly_fields = ["name", "created_at", "torn_down_at"]


class SessionEventInline(admin.TabularInline):
    """The session's timeline (audio levels left out: several per second)."""

    model = SessionEvent
    fields = ["created_at", "type", "payload"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["id"]
    verbose_name_plural = "timeline"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).exclude(type__in=history.TIMELINE_EXCLUDES)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _export_response(sessions: QuerySet, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(history.export_json(sessions.iterator(chunk_size=100)),
                                     content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(VoiceSession)
class VoiceSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "assistant", "status", "voice_only", "created_at", "ended_at", "end_reason"]
    list_filter = ["status", "voice_only", "assistant", "room__provider"]
    search_fields = ["id", "user__username", "user__email", "assistant__slug", "assistant__name"]
    list_select_related = ["user", "assistant"]
    readonly_fields = ["id", "status", "created_at", "started_at", "connected_at", "ended_at", "ends_at",
                       "end_reason", "bot_worker_id", "pause_reason", "recording_player", "transcript", "errors",
                       "export_link"]
    exclude = ["recording"]  # shown as a player (recording_player), served only through the admin
    inlines = [SessionEventInline]
    date_hierarchy = "created_at"
    actions = ["export_json"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "assistant", "room")

    def get_urls(self):
        return [path("<uuid:session_id>/export/", self.admin_site.admin_view(self.export_one),
                     name="voicesessions_voicesession_export"),
                path("<uuid:session_id>/recording/", self.admin_site.admin_view(self.recording_file),
                     name="voicesessions_voicesession_recording"), *super().get_urls()]

    @admin.display(description="recording")
    def recording_player(self, obj: VoiceSession) -> str:
        if not obj.recording:
            return "—"
        url = reverse("admin:voicesessions_voicesession_recording", args=[obj.pk])
        return format_html('<audio controls preload="none" src="{}"></audio> <a href="{}">Download</a> '
                           "(the user on the left channel, the assistant on the right)", url, url)

    def recording_file(self, request: HttpRequest, session_id) -> FileResponse:
        """The recording, to staff who may view the session (never a public media URL)."""
        session = get_object_or_404(VoiceSession, pk=session_id)
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        if not session.recording:
            raise Http404("This session has no recording.")
        return FileResponse(session.recording.open("rb"), content_type="audio/wav",
                            filename=f"voice-session-{session.pk}.wav")

    @admin.display(description="transcript")
    def transcript(self, obj: VoiceSession) -> str:
        lines = history.transcript(obj)
        if not lines:
            return "—"
        return format_html("<ol class='voice-transcript'>{}</ol>", format_html_join(
            "", "<li><time>{}</time> <strong>{}</strong>: {}{}</li>",
            ((timezone.localtime(line["at"]).strftime("%H:%M:%S"), line["role"], line["text"],
              " (interrupted)" if line["interrupted"] else "") for line in lines)))

    @admin.display(description="errors")
    def errors(self, obj: VoiceSession) -> str:
        found = history.errors(obj)
        if not found:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li>{} <strong>{}</strong> {}</li>",
            ((timezone.localtime(e["at"]).strftime("%H:%M:%S"), e["kind"], e["detail"]) for e in found)))

    @admin.display(description="export")
    def export_link(self, obj: VoiceSession) -> str:
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">Download this session as JSON</a>',
                           reverse("admin:voicesessions_voicesession_export", args=[obj.pk]))

    @admin.action(description="Export selected sessions as JSON", permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return _export_response(queryset.select_related("user", "assistant", "room").order_by("created_at"),
                                f"voice-sessions-{stamp}.json")

    def export_one(self, request: HttpRequest, session_id) -> StreamingHttpResponse:
        session = get_object_or_404(VoiceSession, pk=session_id)
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        return _export_response(VoiceSession.objects.filter(pk=session.pk).select_related("user", "assistant", "room"),
                                f"voice-session-{session.pk}.json")


@admin.register(BotJob)
class BotJobAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "status", "attempts", "worker_id", "created_at", "claimed_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "worker_id", "session__id"]
    readonly_fields = ["id", "created_at", "claimed_at", "finished_at"]


@admin.register(OpsEvent)
class OpsEventAdmin(admin.ModelAdmin):
    """The counted facts behind /metrics and the dashboard: read-only."""

    list_display = ["created_at", "kind", "label", "value", "detail", "user", "session"]
    list_filter = ["kind", "label"]
    search_fields = ["detail", "user__username", "session__id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(BotWorker)
class BotWorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "hostname", "pid", "capacity", "active_sessions", "heartbeat_at", "stopped_at"]
    readonly_fields = ["worker_id", "hostname", "pid", "started_at", "heartbeat_at", "stopped_at"]
