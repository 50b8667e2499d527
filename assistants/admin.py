"""Admin for assistants (with their voiceSessionConfig) and the rollout switch."""
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from .models import AssistantRecord, VoiceRollout
from .rollout import decide


@admin.register(AssistantRecord)
class AssistantRecordAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "persona", "voice", "voice_enabled", "voice_persistence",
                    "voice_max_duration", "voice_room_privacy", "rollout_override", "uses_pipecat_voice"]
    list_filter = ["voice_enabled", "voice_room_privacy", "voice_auto_start", "rollout_override", "language",
                   "tenant_id"]
    search_fields = ["name", "slug", "persona", "personality_id", "tenant_id"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "personality_id", "persona", "voice", "language", "tenant_id",
                           "system_prompt"]}),
        ("Voice session config", {"fields": ["voice_enabled", "voice_persistence", "voice_room_privacy",
                                             "voice_max_duration", "voice_auto_start"]}),
        ("Conversation", {"fields": ["first_message", "first_message_mode", "silence_timeout", "silence_prompt",
                                     "end_call_phrases", "end_call_message", "end_call_tool",
                                     "duration_warning_seconds", "duration_warning", "interruption_min_words"],
                          "description": "What the assistant does on its own: its first words, a prompt when "
                                         "the user goes quiet, how the call ends, a warning before the max "
                                         "duration."}),
        ("Rollout", {"fields": ["rollout_override"]}),
    ]

    @admin.display(boolean=True, description="uses Pipecat voice")
    def uses_pipecat_voice(self, obj: AssistantRecord) -> bool:
        return decide(obj).enabled  # one small query per row; list pages hold at most 100


@admin.register(VoiceRollout)
class VoiceRolloutAdmin(admin.ModelAdmin):
    """A singleton: the list page goes straight to the one row's form."""

    fields = ["use_pipecat_voice", "percentage", "updated_at", "updated_by"]
    readonly_fields = ["updated_at", "updated_by"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        obj = VoiceRollout.load()
        return HttpResponseRedirect(reverse("admin:assistants_voicerollout_change", args=[obj.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
