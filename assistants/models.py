"""Assistants and the voice rollout switch."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .providers import LLM_FLAVORS, PROVIDERS, STAGES, STREAMING, VOICE_SHAPES, voice_fits

# voiceSessionConfig for an assistant that never set one (also what migration 0003 back-filled).
DEFAULT_VOICE_SESSION_CONFIG: dict[str, Any] = {
    "enabled": True,
    "persistence": 300,
    "roomPrivacy": "private",
    "maxDuration": 3600,
    "autoStart": False,
}
MAX_PERSISTENCE = 86400
MAX_DURATION = 86400
MAX_SILENCE_TIMEOUT = 3600
MAX_END_CALL_PHRASES = 20
# Deepgram asks for at most 50-100 keywords before a custom model, and boosts phrases (keyterms) of a
# few words; faster-whisper reads its hotwords from the first half of its 448-token prompt.
MAX_STT_KEYWORDS, MAX_STT_KEYWORD_WORDS, MAX_STT_KEYWORD_CHARS = 50, 6, 60
MAX_INTERRUPTION_WORDS = 10
MAX_INTERRUPTION_SECONDS = 10.0
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 16, 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's speech endpoint's range; each provider clamps to its own


class RoomPrivacy(models.TextChoices):
    PRIVATE = "private", "Private (token required)"
    PUBLIC = "public", "Public"


class FirstMessageMode(models.TextChoices):
    """Who speaks first (the names hosted platforms such as VAPI use, so assistants carry over)."""

    SPEAKS_FIRST = "assistant-speaks-first", "The assistant speaks its first message when the user connects"
    WAITS = "assistant-waits-for-user", "The assistant waits for the user to speak first"


class RolloutOverride(models.TextChoices):
    INHERIT = "inherit", "Inherit the global rollout"
    FORCE_ON = "on", "Force on"
    FORCE_OFF = "off", "Force off"


def _new_secret() -> str:
    """A signing secret for a tool or a webhook URL (a function: migrations reference it)."""
    from .signing import new_secret

    return new_secret()


class ModelEndpoint(models.Model):
    """Where one stage of an assistant's pipeline runs: a worker's local model, or a hosted API.

    Assistants name an endpoint per stage (transcriber, LLM, voice). The credential is
    either stored here (`api_key`, admin-only: never in an API response, a job or a log
    line) or named as an environment variable the workers have (`api_key_env`).
    """

    class Stage(models.TextChoices):
        STT = "stt", "Transcriber (speech-to-text)"
        LLM = "llm", "LLM"
        TTS = "tts", "Voice (text-to-speech)"

    name = models.SlugField(max_length=80, unique=True, help_text="How assistants and logs name this endpoint.")
    stage = models.CharField(max_length=3, choices=Stage.choices)
    provider = models.CharField(
        max_length=20, choices=[(p, p) for p in dict.fromkeys(p for ps in PROVIDERS.values() for p in ps)],
        help_text="local: the worker's own model for the stage; openai: any OpenAI-compatible API; "
                  "openai-realtime, deepgram, cartesia, elevenlabs: their streaming APIs.")
    flavor = models.CharField(
        "LLM server kind", max_length=10, choices=[(f, f) for f in LLM_FLAVORS], default="openai",
        help_text="LLM endpoints only: the kind of OpenAI-compatible server (Pipecat's class for it).")
    base_url = models.CharField(max_length=300, blank=True, help_text="e.g. https://api.openai.com/v1")
    model = models.CharField(max_length=120, blank=True, help_text="The model used when an assistant names none.")
    voice = models.CharField("default voice", max_length=120, blank=True,
                             help_text="Voice endpoints only: the voice used when an assistant names none.")
    api_key = models.CharField(max_length=500, blank=True, help_text="Stored for the workers; never shown again.")
    api_key_env = models.CharField(
        "API key variable", max_length=80, blank=True,
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name, e.g. GROQ_API_KEY.")],
        help_text="Or: the environment variable that holds the key on the workers.")
    enabled = models.BooleanField(default=True, help_text="Off: assistants that name it cannot start sessions.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["stage", "name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stage__in=STAGES), name="endpoint_stage_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider} {self.get_stage_display().split(' (')[0].lower()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.provider not in PROVIDERS.get(self.stage, ()):
            errors["provider"] = f"A {self.stage} endpoint is one of {', '.join(PROVIDERS.get(self.stage, ()))}."
        if self.flavor != "openai" and self.stage != "llm":
            errors["flavor"] = "Only LLM endpoints have a server kind."
        if self.voice and self.stage != "tts":
            errors["voice"] = "Only voice endpoints have a default voice."
        elif not voice_fits(self.provider, self.voice):
            errors["voice"] = f"Not a {self.provider} voice id."
        elif self.stage == "tts" and self.provider != "local" and not self.voice:
            errors["voice"] = "Name the voice used when an assistant names none."
        if self.provider == "local":
            for name in ("base_url", "model", "api_key", "api_key_env"):
                if getattr(self, name):
                    errors[name] = "A local endpoint is the worker's own model: leave this empty."
        else:
            if not self.base_url.startswith(("https://", "http://", "wss://", "ws://")):
                errors["base_url"] = "An http(s) or ws(s) URL."
            if not self.model:
                errors["model"] = "Name the model (assistants may name another)."
            if self.api_key and self.api_key_env:
                errors["api_key_env"] = "Either a stored key or a variable, not both."
            elif not (self.api_key or self.api_key_env) and (self.provider in STREAMING
                                                             or self.flavor in ("groq", "azure")):
                errors["api_key"] = f"{self.provider} needs an API key (stored here or in a variable)."
        if errors:
            raise ValidationError(errors)

    def job_spec(self, model: str = "") -> dict[str, Any]:
        """What a worker needs to reach this endpoint, without the secret: the worker reads a
        stored key from this row itself (`hasKey`), or from its environment (`keyEnv`)."""
        spec: dict[str, Any] = {"endpoint": self.name, "provider": self.provider}
        if self.provider != "local":
            spec.update(baseUrl=self.base_url.rstrip("/"), model=model or self.model, keyEnv=self.api_key_env,
                        hasKey=bool(self.api_key))
        if self.stage == "llm":
            spec["flavor"] = self.flavor
        if self.stage == "tts" and self.voice:
            spec["voice"] = self.voice
        return spec


def clean_keywords(keywords: Any) -> list[str]:
    """The transcriber keywords as stored: a list of distinct words or short phrases, stripped.
    Raises ValidationError naming `stt_keywords`."""
    def bad(why: str) -> ValidationError:
        return ValidationError({"stt_keywords": why})

    if keywords is None:  # the admin's JSON box cleared
        return []
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise bad("A list of words or phrases (non-empty strings).")
    cleaned: list[str] = []
    for keyword in (" ".join(k.split()) for k in keywords):
        if ":" in keyword:  # Deepgram's intensifier syntax: every provider here takes the words alone
            raise bad(f"{keyword!r}: no intensifiers, list the word alone.")
        if len(keyword) > MAX_STT_KEYWORD_CHARS or len(keyword.split()) > MAX_STT_KEYWORD_WORDS:
            raise bad(f"{keyword!r}: at most {MAX_STT_KEYWORD_WORDS} words and {MAX_STT_KEYWORD_CHARS} characters.")
        if keyword.casefold() not in {c.casefold() for c in cleaned}:
            cleaned.append(keyword)
    if len(cleaned) > MAX_STT_KEYWORDS:
        raise bad(f"At most {MAX_STT_KEYWORDS} keywords.")
    return cleaned


class AssistantRecord(models.Model):
    """An assistant users talk to, with its voice session configuration.

    The five `voice_*` fields are the assistant's `voiceSessionConfig`; `voice_session_config`
    gives them back in the API's camelCase shape.
    """

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    personality_id = models.CharField("personalityId", max_length=80, blank=True)
    persona = models.CharField(max_length=120, blank=True)
    voice = models.CharField("voice id", max_length=120, blank=True)
    language = models.CharField(max_length=16, default="en")
    tenant_id = models.CharField("tenantId", max_length=80, blank=True)
    system_prompt = models.TextField(blank=True)

    voice_enabled = models.BooleanField(
        "enabled", default=DEFAULT_VOICE_SESSION_CONFIG["enabled"], help_text="Use Pipecat voice sessions for this assistant.")
    voice_persistence = models.PositiveIntegerField(
        "persistence (s)", default=DEFAULT_VOICE_SESSION_CONFIG["persistence"],
        validators=[MinValueValidator(0), MaxValueValidator(MAX_PERSISTENCE)],
        help_text="Seconds the room and bot stay after the user leaves; 0 tears down at once.")
    voice_room_privacy = models.CharField(
        "room privacy", max_length=8, choices=RoomPrivacy.choices, default=DEFAULT_VOICE_SESSION_CONFIG["roomPrivacy"])
    voice_max_duration = models.PositiveIntegerField(
        "max duration (s)", default=DEFAULT_VOICE_SESSION_CONFIG["maxDuration"],
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DURATION)],
        help_text="A voice session ends after this many seconds.")
    voice_auto_start = models.BooleanField(
        "auto start", default=DEFAULT_VOICE_SESSION_CONFIG["autoStart"], help_text="Start voice when the assistant page loads.")

    # Conversation behaviour (issue 13): what the bot does on its own, not in answer to the user.
    first_message = models.TextField(
        blank=True, help_text="Spoken as soon as the user is connected (see first message mode). Empty: none.")
    first_message_mode = models.CharField(
        max_length=32, choices=FirstMessageMode.choices, default=FirstMessageMode.SPEAKS_FIRST)
    silence_timeout = models.PositiveIntegerField(
        "silence timeout (s)", default=0, validators=[MaxValueValidator(MAX_SILENCE_TIMEOUT)],
        help_text="After this many seconds of silence the assistant asks whether the user is still there, "
                  "and ends the session if the silence lasts as long again. 0: never.")
    silence_prompt = models.CharField(max_length=200, default="Are you still there?")
    end_call_phrases = models.JSONField(
        default=list, blank=True,
        help_text='Phrases that end the session once the assistant has said one, e.g. ["goodbye", "talk soon"].')
    end_call_message = models.CharField(
        max_length=300, blank=True, help_text="Spoken before the assistant ends the session. Empty: none.")
    end_call_tool = models.BooleanField(
        "end-call tool", default=False,
        help_text="Give the model an end_call tool, so it can end the session when the conversation is over.")
    duration_warning_seconds = models.PositiveIntegerField(
        "max-duration warning (s)", default=0, validators=[MaxValueValidator(MAX_DURATION)],
        help_text="Seconds before the max duration at which the warning is spoken. 0: no warning.")
    duration_warning = models.CharField(
        "max-duration warning", max_length=300, default="We are nearly out of time for this call.")
    interruption_min_words = models.PositiveSmallIntegerField(
        "words to interrupt", default=0, validators=[MaxValueValidator(MAX_INTERRUPTION_WORDS)],
        help_text="How many words the user must say before the assistant stops talking for them. "
                  "0: as soon as the user is heard.")
    interruption_min_seconds = models.FloatField(
        "seconds to interrupt", default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_INTERRUPTION_SECONDS)],
        help_text="Or: how long the user must speak before the assistant stops for them (with both set, whichever "
                  "comes first). 0: as soon as the user is heard.")

    # Models and voice (issue 13): each stage names an endpoint; none is the worker's default.
    stt_endpoint = models.ForeignKey(
        ModelEndpoint, verbose_name="transcriber", null=True, blank=True, on_delete=models.PROTECT,
        related_name="+", limit_choices_to={"stage": "stt"}, help_text="Empty: the workers' default transcriber.")
    stt_model = models.CharField("transcriber model", max_length=120, blank=True,
                                 help_text="Empty: the endpoint's model.")
    stt_keywords = models.JSONField(
        "transcriber keywords", default=list, blank=True,
        help_text='Names and terms the transcriber should expect, e.g. ["Acme", "Zorblax Pro"]: product names, '
                  'places, jargon. Every transcriber is told them (the assistant\'s persona too).')
    llm_endpoint = models.ForeignKey(
        ModelEndpoint, verbose_name="LLM", null=True, blank=True, on_delete=models.PROTECT,
        related_name="+", limit_choices_to={"stage": "llm"}, help_text="Empty: the workers' default LLM.")
    llm_model = models.CharField("LLM model", max_length=120, blank=True, help_text="Empty: the endpoint's model.")
    llm_temperature = models.FloatField(
        "temperature", null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Empty: the model's default.")
    llm_max_tokens = models.PositiveIntegerField(
        "max tokens", null=True, blank=True,
        validators=[MinValueValidator(MIN_MAX_TOKENS), MaxValueValidator(MAX_MAX_TOKENS)],
        help_text="The longest spoken answer, in tokens (it still ends on a full sentence). "
                  "Empty: VOICE_LLM_REPLY_TOKENS.")
    tts_endpoint = models.ForeignKey(
        ModelEndpoint, verbose_name="voice provider", null=True, blank=True, on_delete=models.PROTECT,
        related_name="+", limit_choices_to={"stage": "tts"}, help_text="Empty: the workers' default voice.")
    tts_model = models.CharField("voice model", max_length=120, blank=True, help_text="Empty: the endpoint's model.")
    record_calls = models.BooleanField(
        "record calls", default=False,
        help_text="Keep each session's audio, both sides, as a file (played from the session's admin page; "
                  "deleted with the session by the retention command). The page tells users.")
    notes_tools = models.BooleanField(
        "notes tools", default=True,
        help_text="Give the assistant the built-in notes tools (create, list, read, update, delete, search).")
    voice_speed = models.FloatField(
        "speaking speed", null=True, blank=True, validators=[MinValueValidator(MIN_SPEED), MaxValueValidator(MAX_SPEED)],
        help_text="1.0 is normal; a join's voiceParameters.speed overrides it. Empty: 1.0.")

    server_url = models.URLField(
        "webhook URL", max_length=500, blank=True,
        help_text="Receives this assistant's sessions' events and end-of-call reports as signed JSON. "
                  "Empty: VOICE_WEBHOOK_URL (if set).")
    server_secret = models.CharField(
        "webhook signing secret", max_length=100, default=_new_secret, blank=True,
        help_text="Signs each webhook (X-Voice-Signature). Give it to the server's owner. Blank: a new one is made.")

    rollout_override = models.CharField(
        max_length=8, choices=RolloutOverride.choices, default=RolloutOverride.INHERIT,
        help_text="Take part in the percentage rollout, or force voice on or off.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(voice_persistence__lte=MAX_PERSISTENCE),
                name="assistant_persistence_range"),
            models.CheckConstraint(
                condition=models.Q(voice_max_duration__gte=1, voice_max_duration__lte=MAX_DURATION),
                name="assistant_max_duration_range"),
            models.CheckConstraint(
                condition=models.Q(voice_room_privacy__in=RoomPrivacy.values),
                name="assistant_room_privacy_valid"),
            models.CheckConstraint(
                condition=models.Q(rollout_override__in=RolloutOverride.values),
                name="assistant_rollout_override_valid"),
            models.CheckConstraint(
                condition=models.Q(first_message_mode__in=FirstMessageMode.values),
                name="assistant_first_message_mode_valid"),
            models.CheckConstraint(
                condition=models.Q(silence_timeout__lte=MAX_SILENCE_TIMEOUT),
                name="assistant_silence_timeout_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.server_secret = self.server_secret or _new_secret()  # cleared in admin: rotated
        # Guard the invariants on every save path, not only in forms.
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self._clean_models()
        phrases = self.end_call_phrases
        if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ValidationError({"end_call_phrases": "A list of phrases (non-empty strings)."})
        if len(phrases) > MAX_END_CALL_PHRASES:
            raise ValidationError({"end_call_phrases": f"At most {MAX_END_CALL_PHRASES} phrases."})
        self.end_call_phrases = [p.strip() for p in phrases]
        self.stt_keywords = clean_keywords(self.stt_keywords)
        if self.duration_warning_seconds and self.duration_warning_seconds >= self.voice_max_duration:
            raise ValidationError({"duration_warning_seconds": "Must be shorter than the max duration."})
        if self.silence_timeout and self.silence_timeout < 2:
            raise ValidationError({"silence_timeout": "At least 2 seconds (or 0 for never)."})

    def _clean_models(self) -> None:
        errors: dict[str, str] = {}
        for stage in STAGES:
            endpoint: ModelEndpoint | None = getattr(self, f"{stage}_endpoint")
            if endpoint is None:
                continue
            if endpoint.stage != stage:
                errors[f"{stage}_endpoint"] = f"{endpoint.name} is a {endpoint.get_stage_display()} endpoint."
            elif not endpoint.enabled:
                errors[f"{stage}_endpoint"] = f"{endpoint.name} is turned off."
            elif endpoint.provider == "local" and getattr(self, f"{stage}_model"):
                errors[f"{stage}_model"] = "The local endpoint has one model: leave this empty."
        tts = self.tts_endpoint
        if tts is not None and not voice_fits(tts.provider, self.voice):
            errors["voice"] = f"Not a {tts.provider} voice id ({VOICE_SHAPES[tts.provider].pattern})."
        if errors:
            raise ValidationError(errors)

    @property
    def models_spec(self) -> dict[str, Any]:
        """This assistant's model choices as a job carries them (no secrets): per stage, the
        endpoint to use (absent: the worker's default) and the stage's parameters."""
        spec: dict[str, Any] = {}
        for stage in STAGES:
            endpoint = getattr(self, f"{stage}_endpoint")
            spec[stage] = endpoint.job_spec(getattr(self, f"{stage}_model")) if endpoint is not None else {}
        if self.llm_temperature is not None:
            spec["llm"]["temperature"] = self.llm_temperature
        if self.llm_max_tokens is not None:
            spec["llm"]["maxTokens"] = self.llm_max_tokens
        if self.stt_keywords:
            spec["stt"]["keywords"] = list(self.stt_keywords)
        return spec

    @property
    def public_models(self) -> dict[str, Any]:
        """What the page may know of the assistant's models: per stage its provider and model, never
        where they live or how they are reached ("default": the workers' own choice)."""
        out: dict[str, Any] = {}
        for stage in STAGES:
            endpoint = getattr(self, f"{stage}_endpoint")
            model = getattr(self, f"{stage}_model") or (endpoint.model if endpoint else "")
            out[stage] = {"provider": endpoint.provider if endpoint else "default", "model": model}
        out["tts"]["voice"] = self.voice or (self.tts_endpoint.voice if self.tts_endpoint else "")
        out["tts"]["speed"] = self.voice_speed
        out["llm"]["temperature"] = self.llm_temperature
        out["llm"]["maxTokens"] = self.llm_max_tokens
        return out

    @property
    def voice_parameters(self) -> dict[str, Any]:
        """The voiceParameters a join gets unless it sends its own."""
        return {"speed": self.voice_speed} if self.voice_speed is not None else {}

    @property
    def behaviour(self) -> dict[str, Any]:
        """What the bot does on its own in this assistant's sessions (the job's `behaviour`)."""
        return {
            "firstMessage": self.first_message.strip(),
            "firstMessageMode": self.first_message_mode,
            "silenceTimeout": self.silence_timeout,
            "silencePrompt": self.silence_prompt,
            "endCallPhrases": list(self.end_call_phrases),
            "endCallMessage": self.end_call_message,
            "endCallTool": self.end_call_tool,
            "durationWarningSeconds": self.duration_warning_seconds,
            "durationWarning": self.duration_warning,
            "interruptionMinWords": self.interruption_min_words,
            "interruptionMinSeconds": self.interruption_min_seconds,
            "notesTools": self.notes_tools,
            "recordCalls": self.record_calls,
        }

    @property
    def voice_session_config(self) -> dict[str, Any]:
        """This assistant's `voiceSessionConfig` (enabled, persistence, roomPrivacy, maxDuration, autoStart)."""
        return {
            "enabled": self.voice_enabled,
            "persistence": self.voice_persistence,
            "roomPrivacy": self.voice_room_privacy,
            "maxDuration": self.voice_max_duration,
            "autoStart": self.voice_auto_start,
        }


BUILTIN_TOOLS = frozenset({"create_note", "list_notes", "read_note", "update_note", "delete_note", "search_notes",
                           "end_call"})
MAX_TOOL_TIMEOUT, MAX_TOOL_RETRIES = 30, 5
# What a tool says while its endpoint works, unless its admin words it otherwise: a hosted platform
# (VAPI) says a filler like this one when a tool call starts, and a local model's answer after the
# call takes seconds (docs/benchmarks.md), which is silence on the line without it.
DEFAULT_START_MESSAGE = "One moment."
# Said when the endpoint has not answered after `delayed_after_seconds` (a hosted platform's
# request-response-delayed message): a tool may take its timeout and a retry, 20 s by default.
DEFAULT_DELAYED_MESSAGE = "Sorry, this is taking a little longer."
DEFAULT_DELAYED_AFTER = 4.0


def placeholders(message: str) -> list[str]:
    """The `{name}` placeholders of a tool's complete message; ValueError for any other kind of field
    (an index, an attribute, a format spec): the endpoint's answer is filled in as words, not code."""
    import string

    names = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(message):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                raise ValueError(f"{{{name}}}: only {{name}} placeholders, a member of the endpoint's answer.")
            names.append(name)
    except ValueError as exc:
        if "placeholders" in str(exc):
            raise
        raise ValueError(f"Not a valid message: {exc}. Write a literal brace as {{{{ or }}}}.") from None
    return names


def _no_builtin_name(name: str) -> None:
    if name in BUILTIN_TOOLS:
        raise ValidationError(f"{name} is a built-in tool's name.")


class AssistantTool(models.Model):
    """A tool an admin gives one assistant: the model calls it, and the call is an HTTP(S)
    POST to the tool's endpoint, signed with the tool's own secret (assistants/signing.py)."""

    assistant = models.ForeignKey(AssistantRecord, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[a-zA-Z_][a-zA-Z0-9_-]*$", "Letters, digits, _ and -; not starting with a digit."),
                    _no_builtin_name],
        help_text="What the model calls it, e.g. book_appointment.")
    description = models.TextField(help_text="What the tool does and when to use it: the model reads this.")
    parameters = models.JSONField(
        default=dict, blank=True,
        help_text='A JSON Schema object, e.g. {"type": "object", "properties": {"day": {"type": "string"}}, '
                  '"required": ["day"]}. Empty: no arguments.')
    start_message = models.CharField(
        "said as the call starts", max_length=200, blank=True, default=DEFAULT_START_MESSAGE,
        help_text="Spoken at once, while the endpoint works and the answer is made, so the user is not "
                  "left in silence (a hosted platform's request-start message). Blank: nothing is said.")
    delayed_message = models.CharField(
        "said when the endpoint is slow", max_length=200, blank=True, default=DEFAULT_DELAYED_MESSAGE,
        help_text="Spoken once when the endpoint has not answered after the delay below (a hosted platform's "
                  "request-response-delayed message). Blank: nothing is said.")
    delayed_after_seconds = models.FloatField(
        "delay before it (s)", default=DEFAULT_DELAYED_AFTER,
        validators=[MinValueValidator(0.5), MaxValueValidator(MAX_TOOL_TIMEOUT)])
    failed_message = models.CharField(
        "said when the call fails", max_length=200, blank=True,
        help_text="Spoken instead of the model's own words when the endpoint fails after its retries, e.g. "
                  "\"I couldn't reach the booking system just now.\" (a hosted platform's request-failed message). "
                  "Blank: the model apologises in its own words.")
    complete_message = models.CharField(
        "said when the call succeeds", max_length=300, blank=True,
        help_text="Spoken instead of the model's own words when the endpoint answers (a hosted platform's "
                  "request-complete message); {name} is replaced by the answer's member of that name, e.g. "
                  "\"I'm transferring you now. The wait is {wait}.\" An answer without it is left to the model. "
                  "Blank: the model puts the answer in words.")
    url = models.URLField("endpoint", max_length=500, help_text="Receives each call as a signed JSON POST.")
    secret = models.CharField(
        "signing secret", max_length=100, default=_new_secret, blank=True,
        help_text="Signs each request (X-Voice-Signature). Give it to the endpoint's owner. Blank: a new one is made.")
    timeout_seconds = models.FloatField(
        "timeout (s)", default=10.0, validators=[MinValueValidator(0.5), MaxValueValidator(MAX_TOOL_TIMEOUT)],
        help_text="Per attempt. The user waits this long at most for each try.")
    max_retries = models.PositiveSmallIntegerField(
        "retries", default=1, validators=[MaxValueValidator(MAX_TOOL_RETRIES)],
        help_text="Tries after a failed one (no answer, 5xx or 429); a 4xx is not retried.")
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "custom tool"
        ordering = ["assistant", "name"]
        constraints = [models.UniqueConstraint(fields=["assistant", "name"], name="assistant_tool_name_unique")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.secret = self.secret or _new_secret()  # cleared in admin: rotated
        self.full_clean(validate_constraints=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # Spaces alone would be spoken as a pause.
        self.start_message = (self.start_message or "").strip()
        self.delayed_message = (self.delayed_message or "").strip()
        self.failed_message = (self.failed_message or "").strip()
        self.complete_message = (self.complete_message or "").strip()
        try:
            placeholders(self.complete_message)
        except ValueError as exc:
            raise ValidationError({"complete_message": str(exc)}) from None
        if self.parameters in (None, ""):
            self.parameters = {}
        if self.parameters == {}:
            return
        import jsonschema

        params = self.parameters
        if not isinstance(params, dict) or params.get("type") != "object":
            raise ValidationError({"parameters": 'A JSON Schema with "type": "object".'})
        try:
            jsonschema.Draft202012Validator.check_schema(params)
        except jsonschema.SchemaError as exc:
            raise ValidationError({"parameters": f"Not a valid JSON Schema: {exc.message}"}) from None
        if not isinstance(params.get("properties", {}), dict):
            raise ValidationError({"parameters": '"properties" must be an object.'})

    def job_spec(self) -> dict[str, Any]:
        """The tool as a job carries it: its definition, not its secret (the worker reads that by `id`)."""
        return {"id": self.pk, "name": self.name, "description": self.description,
                "parameters": self.parameters or {"type": "object", "properties": {}},
                "url": self.url, "timeoutSeconds": self.timeout_seconds, "retries": self.max_retries,
                "startMessage": self.start_message, "delayedMessage": self.delayed_message,
                "delayedAfterSeconds": self.delayed_after_seconds, "failedMessage": self.failed_message,
                "completeMessage": self.complete_message}


class VoiceRollout(models.Model):
    """The global voice switch and the rollout percentage.

    A single row (pk=1), edited in Django admin. Setting the percentage to 0
    is the rollback.
    """

    SINGLETON_PK = 1

    use_pipecat_voice = models.BooleanField(
        "USE_PIPECAT_VOICE", default=True,
        help_text="Master switch. Off turns voice sessions off for every assistant.")
    percentage = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of assistants (0-100) that use voice sessions. 0 is the rollback.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "voice rollout"
        verbose_name_plural = "voice rollout"
        constraints = [
            models.CheckConstraint(condition=models.Q(percentage__lte=100),
                                   name="rollout_percentage_range"),
        ]

    def __str__(self) -> str:
        state = "on" if self.use_pipecat_voice else "off"
        return f"Pipecat voice {state}, {self.percentage}%"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = self.SINGLETON_PK
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> "VoiceRollout":
        """The rollout row, created from settings the first time it is read."""
        obj, _ = cls.objects.get_or_create(
            pk=cls.SINGLETON_PK,
            defaults={"use_pipecat_voice": settings.USE_PIPECAT_VOICE,
                      "percentage": settings.VOICE_ROLLOUT_PERCENTAGE})
        return obj
