"""Request and response shapes of the voice API: camelCase, the names the browser client uses."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from assistants.models import MAX_PERSISTENCE

from ..models import SessionEvent, VoiceSession


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo ('voiceonly') is a 400, not a silent default."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


@extend_schema_field({"oneOf": [{"type": "array", "items": {"type": "string"}},
                                 {"type": "object", "additionalProperties": {},
                                  "description": "A nested object's own field errors, the same way."}]})
class FieldErrorsField(serializers.JSONField):
    """Why one input field was refused: its messages, or for a nested object its fields' errors."""


class ErrorSerializer(serializers.Serializer):
    """The one JSON shape of every API error (built by voicesessions/api/errors.py)."""

    error = serializers.CharField(help_text="Machine-readable code, e.g. 'invalid', 'not_found', 'throttled'.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    fields = serializers.DictField(child=FieldErrorsField(), required=False,
                                   help_text="The input fields at fault, when specific fields are.")


class RoomRequestSerializer(StrictSerializer):
    assistant = serializers.SlugField(required=False, help_text="Assistant slug; its voice config applies.")
    assistantName = serializers.CharField(required=False, max_length=120,
                                          help_text="Accepted from older clients; informational.")


class RoomResponseSerializer(serializers.Serializer):
    roomUrl = serializers.CharField()
    roomName = serializers.CharField()
    provider = serializers.CharField()
    token = serializers.CharField()
    tokenExpiresAt = serializers.DateTimeField()
    reused = serializers.BooleanField()
    expiresAt = serializers.DateTimeField()
    privacy = serializers.CharField()
    maxParticipants = serializers.IntegerField()
    persistAfterLeave = serializers.IntegerField()


class LeaveRequestSerializer(StrictSerializer):
    roomUrl = serializers.CharField(required=False, max_length=500)
    teardownDelay = serializers.IntegerField(required=False, min_value=0, max_value=MAX_PERSISTENCE,
                                             help_text="Seconds before teardown; default: the room's persistence.")


class LeaveResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    roomUrl = serializers.CharField()
    teardownDelay = serializers.IntegerField()
    teardownAt = serializers.DateTimeField(allow_null=True)
    state = serializers.CharField()


class VoiceParametersSerializer(StrictSerializer):
    """TTS voice tuning; every field optional, each range-checked."""

    speed = serializers.FloatField(required=False, min_value=0.25, max_value=4.0)
    pitch = serializers.FloatField(required=False, min_value=-20.0, max_value=20.0)
    stability = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    similarityBoost = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    style = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    language = serializers.CharField(required=False, max_length=16)


class JoinRequestSerializer(StrictSerializer):
    """JoinRequest: what a client may ask of the bot that joins its room."""

    room_url = serializers.CharField(required=False, max_length=500,
                                     help_text="Your room's URL; default: your room.")
    personalityId = serializers.CharField(required=False, allow_blank=True, max_length=80)
    persona = serializers.CharField(required=False, allow_blank=True, max_length=120)
    tenantId = serializers.CharField(required=False, allow_blank=True, max_length=80)
    voice = serializers.CharField(required=False, allow_blank=True, max_length=120)
    voiceParameters = VoiceParametersSerializer(required=False)
    voiceOnly = serializers.BooleanField(required=False, default=False)
    sessionPersistence = serializers.IntegerField(required=False, min_value=0, max_value=MAX_PERSISTENCE)
    sessionUserId = serializers.CharField(required=False, max_length=64)
    assistant = serializers.SlugField(required=False)


class JoinResponseSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    status = serializers.CharField()
    roomUrl = serializers.CharField()
    jobId = serializers.UUIDField(allow_null=True)
    reused = serializers.BooleanField()
    queued = serializers.BooleanField()


class VoiceSessionSerializer(serializers.ModelSerializer):
    sessionId = serializers.UUIDField(source="id")
    userId = serializers.CharField(source="user_id")
    roomUrl = serializers.CharField(source="room.url")
    roomName = serializers.CharField(source="room.name")
    assistant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    voiceOnly = serializers.BooleanField(source="voice_only")
    sessionPersistence = serializers.IntegerField(source="session_persistence")
    personalityId = serializers.CharField(source="personality_id")
    tenantId = serializers.CharField(source="tenant_id")
    voiceParameters = serializers.JSONField(source="voice_parameters")
    maxDuration = serializers.IntegerField(source="max_duration")
    pauseReason = serializers.CharField(source="pause_reason")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)  # null until the bot connects
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)  # null while not ended
    endsAt = serializers.DateTimeField(source="ends_at")
    endReason = serializers.CharField(source="end_reason")
    botWorkerId = serializers.CharField(source="bot_worker_id")

    class Meta:
        model = VoiceSession
        fields = ["sessionId", "userId", "status", "roomUrl", "roomName", "assistant", "voiceOnly",
                  "sessionPersistence", "personalityId", "persona", "tenantId", "voice",
                  "voiceParameters", "maxDuration", "pauseReason", "createdAt", "startedAt",
                  "endedAt", "endsAt", "endReason", "botWorkerId"]
        read_only_fields = fields


class SessionEventSerializer(serializers.ModelSerializer):
    """VoiceSessionEvent: one `voice.*` event as the browser receives it."""

    userId = serializers.CharField(source="user_id")
    roomUrl = serializers.CharField(source="room_url")
    sessionId = serializers.UUIDField(source="session_id")
    timestamp = serializers.DateTimeField(source="created_at")

    class Meta:
        model = SessionEvent
        fields = ["id", "type", "userId", "roomUrl", "sessionId", "payload", "timestamp"]
        read_only_fields = fields


class EventListQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(required=False, min_value=0, help_text="Only events with a larger id.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=200)
