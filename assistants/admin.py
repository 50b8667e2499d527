"""Admin for assistants (with their voiceSessionConfig) and the rollout switch."""
from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from .models import AssistantRecord, AssistantTool, ModelEndpoint, VoiceRollout
from .rollout import decide


class AssistantToolInline(admin.StackedInline):
    """The assistant's custom HTTP tools (the model calls them; each call is a signed POST)."""

    model = AssistantTool
    extra = 0
    fields = ["name", "description", "parameters", "url", "secret", "timeout_seconds", "max_retries",
              ("start_message", "failed_message"), ("delayed_message", "delayed_after_seconds"), "complete_message",
              "enabled"]


@admin.register(AssistantRecord)
class AssistantRecordAdmin(admin.ModelAdmin):
    inlines = [AssistantToolInline]
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
                                     "duration_warning_seconds", "duration_warning", "interruption_min_words",
                                     "interruption_min_seconds"],
                          "description": "What the assistant does on its own: its first words, a prompt when "
                                         "the user goes quiet, how the call ends, a warning before the max "
                                         "duration."}),
        ("Models and voice", {"fields": ["stt_endpoint", "stt_model", "stt_keywords", "llm_endpoint", "llm_model",
                                         "llm_temperature", "llm_max_tokens", "tts_endpoint", "tts_model",
                                         "voice_speed"],
                              "description": "Which transcriber, LLM and voice this assistant's sessions use "
                                             "(endpoints are set up under Model endpoints). Empty: the "
                                             "workers' defaults. The voice id is above."}),
        ("Tools", {"fields": ["notes_tools"],
                   "description": "Built-in tools; the end-call tool is under Conversation, custom HTTP tools "
                                  "below. Custom tools need a model with tool calls (a hosted or OpenAI-compatible "
                                  "LLM endpoint): the offline model decides only notes requests."}),
        ("Recording", {"fields": ["record_calls"]}),
        ("Webhooks", {"fields": ["server_url", "server_secret"],
                      "description": "Session status changes, final transcripts, tool calls and an end-of-call "
                                     "report, as signed JSON, at least once. The delivery log is under Webhooks."}),
        ("Rollout", {"fields": ["rollout_override"]}),
    ]

    @admin.display(boolean=True, description="uses Pipecat voice")
    def uses_pipecat_voice(self, obj: AssistantRecord) -> bool:
        return decide(obj).enabled  # one small query per row; list pages hold at most 100


class ModelEndpointForm(forms.ModelForm):
    """The API key is write-only: the form never shows it, and leaving it blank keeps the stored one."""

    api_key = forms.CharField(
        label="API key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Stored for the workers and never shown again. Blank: keep the stored key.")
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = ModelEndpoint
        fields = "__all__"

    def clean(self) -> dict:
        data = super().clean()
        if data.get("clear_api_key"):
            data["api_key"] = ""
        elif not data.get("api_key") and self.instance.pk:
            data["api_key"] = ModelEndpoint.objects.filter(pk=self.instance.pk).values_list(
                "api_key", flat=True).first() or ""
        self.instance.api_key = data["api_key"]  # the model's own checks (key or variable) see the kept key
        return data


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    form = ModelEndpointForm
    list_display = ["name", "stage", "provider", "flavor", "model", "voice", "credential", "enabled"]
    list_filter = ["stage", "provider", "enabled"]
    search_fields = ["name", "model", "base_url"]
    fieldsets = [
        (None, {"fields": ["name", "stage", "provider", "flavor", "base_url", "model", "voice", "enabled"]}),
        ("Credential", {"fields": ["api_key", "clear_api_key", "api_key_env"],
                        "description": "A key stored here, or the name of an environment variable the "
                                       "workers have. Keyless servers (Ollama, vLLM) need neither."}),
    ]

    @admin.display(description="credential")
    def credential(self, obj: ModelEndpoint) -> str:
        if obj.api_key:
            return "stored key"
        return f"${obj.api_key_env}" if obj.api_key_env else "none"


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
