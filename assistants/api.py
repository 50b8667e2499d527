"""GET /api/voice/config: does this assistant use Pipecat voice sessions?"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from voicesessions.api.errors import field_error
from voicesessions.api.serializers import ErrorSerializer

from .models import AssistantRecord
from .rollout import decide


class ConfigQuerySerializer(serializers.Serializer):
    assistant = serializers.SlugField(help_text="The assistant's slug.")


class VoiceSessionConfigSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    persistence = serializers.IntegerField()
    roomPrivacy = serializers.CharField()
    maxDuration = serializers.IntegerField()
    autoStart = serializers.BooleanField()


class ConversationSerializer(serializers.Serializer):
    """What the assistant does on its own, so the page can say what it hears."""

    firstMessage = serializers.CharField(allow_blank=True)
    firstMessageMode = serializers.ChoiceField(choices=["assistant-speaks-first", "assistant-waits-for-user"])
    silenceTimeout = serializers.IntegerField(help_text="Seconds of silence before the prompt; 0: never.")
    silencePrompt = serializers.CharField()
    endCallPhrases = serializers.ListField(child=serializers.CharField())
    endCallMessage = serializers.CharField(allow_blank=True)
    endCallTool = serializers.BooleanField()
    durationWarningSeconds = serializers.IntegerField()
    durationWarning = serializers.CharField()
    interruptionMinWords = serializers.IntegerField(help_text="Words the user says before the assistant stops "
                                                              "for them; 0: at once.")
    interruptionMinSeconds = serializers.FloatField(help_text="Seconds the user speaks before the assistant stops "
                                                               "for them; 0: at once.")
    notesTools = serializers.BooleanField(help_text="Whether the assistant has the built-in notes tools.")
    recordCalls = serializers.BooleanField(help_text="Whether the assistant's calls are recorded (the page says so).")


class StageModelSerializer(serializers.Serializer):
    provider = serializers.CharField(help_text='local, openai, deepgram, ...; "default": the workers\' own choice.')
    model = serializers.CharField(allow_blank=True)


class LLMModelSerializer(StageModelSerializer):
    temperature = serializers.FloatField(allow_null=True)
    maxTokens = serializers.IntegerField(allow_null=True)


class VoiceModelSerializer(StageModelSerializer):
    voice = serializers.CharField(allow_blank=True)
    speed = serializers.FloatField(allow_null=True)


class ModelsSerializer(serializers.Serializer):
    """The assistant's transcriber, LLM and voice: which, never where or with which key."""

    stt = StageModelSerializer()
    llm = LLMModelSerializer()
    tts = VoiceModelSerializer()


class VoiceConfigResponseSerializer(serializers.Serializer):
    assistant = serializers.CharField()
    name = serializers.CharField()
    usePipecatVoice = serializers.BooleanField()
    reason = serializers.CharField()
    provider = serializers.CharField()
    voiceSessionConfig = VoiceSessionConfigSerializer()
    personalityId = serializers.CharField()
    persona = serializers.CharField()
    voice = serializers.CharField()
    language = serializers.CharField()
    conversation = ConversationSerializer()
    models = ModelsSerializer()
    rollout = serializers.DictField()


class VoiceConfigView(APIView):
    """Tells the browser whether to use voice sessions for an assistant, and how."""

    @extend_schema(parameters=[ConfigQuerySerializer],
                   responses={200: VoiceConfigResponseSerializer,
                              400: OpenApiResponse(ErrorSerializer, description="Missing or unknown assistant."),
                              401: OpenApiResponse(ErrorSerializer, description="Not signed in.")},
                   summary="Voice session config and rollout decision for an assistant")
    def get(self, request: Request) -> Response:
        query = ConfigQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        slug = query.validated_data["assistant"]
        assistant = AssistantRecord.objects.filter(slug=slug).first()
        if assistant is None:
            raise field_error("assistant", f"No assistant '{slug}'.")
        decision = decide(assistant)
        return Response({
            "assistant": assistant.slug,
            "name": assistant.name,
            "usePipecatVoice": decision.enabled,
            "reason": decision.reason,
            "provider": settings.VOICE_PROVIDER,
            "voiceSessionConfig": assistant.voice_session_config,
            "personalityId": assistant.personality_id,
            "persona": assistant.persona,
            "voice": assistant.voice,
            "language": assistant.language,
            "conversation": assistant.behaviour,
            "models": assistant.public_models,
            "rollout": {"percentage": decision.percentage, "bucket": decision.bucket,
                        "override": assistant.rollout_override},
        })
