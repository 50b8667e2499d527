"""Voice rooms, voice sessions, their event log and the bot job queue table."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


def room_name_for(user_id: int | str) -> str:
    """A user's one private room is always named `voice-{userId}`."""
    return f"voice-{user_id}"


class RoomState(models.TextChoices):
    LIVE = "live", "Live"
    TEARING_DOWN = "tearing_down", "Tearing down"
    DELETED = "deleted", "Deleted"


class VoiceRoom(models.Model):
    """A user's one private, persistent room (`voice-{userId}`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="voice_room")
    name = models.CharField(max_length=80, unique=True, editable=False)
    provider = models.CharField(max_length=16)
    url = models.CharField(max_length=500)
    privacy = models.CharField(max_length=8, default="private")
    max_participants = models.PositiveSmallIntegerField(default=2)
    state = models.CharField(max_length=16, choices=RoomState.choices, default=RoomState.LIVE)
    persist_after_leave = models.PositiveIntegerField(
        default=300, help_text="Seconds the room stays after the user leaves.")
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # The stored deadline is what makes teardown survive a restart: a sweeper
    # in any process tears down every room whose deadline has passed.
    teardown_at = models.DateTimeField(null=True, blank=True, db_index=True)
    torn_down_at = models.DateTimeField(null=True, blank=True)
    # Counts the room's incarnations: signed into every local room token, so a
    # token issued before a teardown is refused once the room is made again.
    generation = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(max_participants__gte=1),
                                   name="room_max_participants_positive"),
            models.CheckConstraint(condition=models.Q(state__in=RoomState.values),
                                   name="room_state_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The name is derived, never chosen: one user, one room, one name.
        self.name = room_name_for(self.user_id)
        super().save(*args, **kwargs)

    def is_live(self, now: Any = None) -> bool:
        """Usable for a join: not torn down and not past its expiry."""
        now = now or timezone.now()
        return self.state == RoomState.LIVE and self.expires_at > now

    # The one place the leave rule writes its deadline: the sweeper (teardown.sweep_due) acts
    # on it, in any process, so a teardown survives the process that scheduled it.
    def schedule_teardown(self, seconds: float, *, unless_scheduled: bool = False) -> None:
        """Tear the room down `seconds` from now unless the user comes back.

        `unless_scheduled`: keep a deadline already set (the user left through the
        API before their peer's connection went).
        """
        when = timezone.now() + dt.timedelta(seconds=seconds)
        rows = VoiceRoom.objects.filter(pk=self.pk)
        if unless_scheduled:
            rows = rows.filter(teardown_at__isnull=True)
        if rows.update(teardown_at=when):
            self.teardown_at = when

    def cancel_teardown(self) -> None:
        """The user is back inside the persistence window: no teardown pending."""
        VoiceRoom.objects.filter(pk=self.pk).update(teardown_at=None)
        self.teardown_at = None


class SessionStatus(models.TextChoices):
    """The statuses the browser sees (inactive, connecting, active, paused, unavailable), plus
    `ended` for sessions that are over."""

    INACTIVE = "inactive", "Inactive"
    CONNECTING = "connecting", "Connecting"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    UNAVAILABLE = "unavailable", "Unavailable"
    ENDED = "ended", "Ended"


# The one place that says which status may follow which.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    SessionStatus.CONNECTING: frozenset({SessionStatus.ACTIVE, SessionStatus.INACTIVE,
                                         SessionStatus.UNAVAILABLE, SessionStatus.ENDED}),
    SessionStatus.ACTIVE: frozenset({SessionStatus.PAUSED, SessionStatus.INACTIVE,
                                     SessionStatus.UNAVAILABLE, SessionStatus.ENDED}),
    SessionStatus.PAUSED: frozenset({SessionStatus.ACTIVE, SessionStatus.INACTIVE,
                                     SessionStatus.UNAVAILABLE, SessionStatus.ENDED}),
    # inactive: the user left and the room waits out its persistence window. Its worker may
    # then stop: the bot is gone, so the session is unavailable and a return brings a new one.
    SessionStatus.INACTIVE: frozenset({SessionStatus.CONNECTING, SessionStatus.UNAVAILABLE, SessionStatus.ENDED}),
    SessionStatus.UNAVAILABLE: frozenset({SessionStatus.CONNECTING, SessionStatus.ENDED}),
    SessionStatus.ENDED: frozenset(),
}
# Sessions that hold the room's one bot slot.
LIVE_STATUSES = (SessionStatus.CONNECTING, SessionStatus.ACTIVE, SessionStatus.PAUSED,
                 SessionStatus.INACTIVE)


class IllegalTransition(Exception):
    """A status change that ALLOWED_TRANSITIONS forbids, or that lost a race."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a session cannot go from '{current}' to '{target}'")
        self.current = current
        self.target = target


class VoiceSessionQuerySet(models.QuerySet):
    def live(self) -> "VoiceSessionQuerySet":
        """Sessions that hold their room's one bot slot (LIVE_STATUSES)."""
        return self.filter(status__in=LIVE_STATUSES)


class VoiceSession(models.Model):
    """One bot conversation in a user's room, from /join to teardown."""

    objects = VoiceSessionQuerySet.as_manager()

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="voice_sessions")
    assistant = models.ForeignKey("assistants.AssistantRecord", null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="voice_sessions")
    room = models.ForeignKey(VoiceRoom, on_delete=models.CASCADE, related_name="sessions")
    status = models.CharField(max_length=16, choices=SessionStatus.choices,
                              default=SessionStatus.CONNECTING, db_index=True)
    pause_reason = models.CharField(max_length=16, blank=True,
                                    help_text="Who paused it: 'user' or 'dailyCall'.")
    # The JoinRequest, as the bot will apply it.
    voice_only = models.BooleanField(default=False)
    session_persistence = models.PositiveIntegerField(default=300)
    personality_id = models.CharField(max_length=80, blank=True)
    persona = models.CharField(max_length=120, blank=True)
    tenant_id = models.CharField(max_length=80, blank=True)
    voice = models.CharField(max_length=120, blank=True)
    voice_parameters = models.JSONField(default=dict, blank=True)
    max_duration = models.PositiveIntegerField(default=3600)
    # Stored rather than derived so the sweeper finds overdue sessions by index.
    ends_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                   help_text="created_at + max_duration: the session ends then.")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the current conversation began (bot connected); a rejoin starts a new one.
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=64, blank=True)
    recording = models.FileField(upload_to="recordings/", blank=True,
                                 help_text="The call's audio, both sides (user left, assistant right), when recorded.")
    bot_worker_id = models.CharField(max_length=120, blank=True)
    # Set while a bot waits for the user's audio; the sweeper ends the session
    # when it passes, so a join that never connects does not hold a worker slot.
    connect_by = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Exactly one bot per room: at most one live session per room.
            models.UniqueConstraint(fields=["room"], condition=models.Q(status__in=LIVE_STATUSES),
                                    name="one_live_session_per_room"),
            models.CheckConstraint(condition=models.Q(status__in=SessionStatus.values),
                                   name="session_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.room.name} {self.id} ({self.status})"

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> "VoiceSession":
        obj = super().from_db(db, field_names, values)
        obj._loaded_status = obj.status  # type: ignore[attr-defined]
        return obj

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.ends_at is None:
            self.ends_at = self.created_at + dt.timedelta(seconds=self.max_duration)
        loaded = getattr(self, "_loaded_status", None)
        if loaded is not None and loaded != self.status and self.status not in ALLOWED_TRANSITIONS[loaded]:
            raise IllegalTransition(loaded, self.status)
        super().save(*args, **kwargs)
        self._loaded_status = self.status

    def transition_to(self, target: str, *, reason: str = "", **fields: Any) -> None:
        """Move to `target` or raise IllegalTransition.

        A compare-and-set UPDATE, so two processes racing on the same session
        cannot both win: the loser sees zero rows updated and gets the error.
        """
        current = self.status
        if target not in ALLOWED_TRANSITIONS[current]:
            raise IllegalTransition(current, target)
        now = timezone.now()
        changes: dict[str, Any] = {"status": target, "updated_at": now, **fields}
        if target == SessionStatus.ACTIVE and self.started_at is None:
            changes["started_at"] = now
        if target == SessionStatus.ACTIVE and current == SessionStatus.CONNECTING:
            changes["connected_at"] = now
        if target == SessionStatus.ENDED:
            changes["ended_at"] = now
            changes["end_reason"] = reason or "ended"
        if target != SessionStatus.PAUSED:
            changes.setdefault("pause_reason", "")
        if target != SessionStatus.CONNECTING:
            changes.setdefault("connect_by", None)
        updated = VoiceSession.objects.filter(pk=self.pk, status=current).update(**changes)
        if not updated:
            self.refresh_from_db(fields=["status"])
            raise IllegalTransition(self.status, target)
        for name, value in changes.items():
            setattr(self, name, value)
        self._loaded_status = target


class VoiceEventType(models.TextChoices):
    """The `voice.*` event types the browser receives."""

    SESSION_START = "voice.session.start"
    SESSION_END = "voice.session.end"
    SPEECH_START = "voice.speech.start"
    SPEECH_END = "voice.speech.end"
    TRANSCRIPT = "voice.transcript"
    AUDIO_LEVEL = "voice.audio.level"
    BOT_SPEAKING = "voice.bot.speaking"
    ERROR = "voice.error"
    SESSION_STATUS = "voice.session.status"
    TOOL_CALL = "voice.tool.call"
    TOOL_RESULT = "voice.tool.result"


class SessionEventQuerySet(models.QuerySet):
    def for_user(self, user: Any) -> "SessionEventQuerySet":
        return self.filter(user=user)

    def after(self, event_id: int) -> "SessionEventQuerySet":
        """Events newer than `event_id`, oldest first: what a reconnecting client missed."""
        return self.filter(id__gt=event_id).order_by("id")


class SessionEvent(models.Model):
    """One `voice.*` event: stored here, then pushed to the user's websockets."""

    objects = SessionEventQuerySet.as_manager()

    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="voice_events")
    type = models.CharField(max_length=32, choices=VoiceEventType.choices, db_index=True)
    room_url = models.CharField(max_length=500)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "id"], name="event_user_cursor")]

    def __str__(self) -> str:
        return f"{self.type} {self.session_id}"

    def as_message(self) -> dict[str, Any]:
        """The event as the browser receives it: type, sessionId, userId, timestamp, data."""
        return {
            "id": self.pk,
            "type": self.type,
            "userId": str(self.user_id),
            "roomUrl": self.room_url,
            "sessionId": str(self.session_id),
            "payload": self.payload,
            "timestamp": self.created_at.isoformat(),
        }


class BotJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLAIMED = "claimed", "Claimed"
    DONE = "done", "Done (bot joined)"
    FAILED = "failed", "Failed"


class BotJobQuerySet(models.QuerySet):
    def finish(self, job_id: Any, worker_id: str, *, status: str, error: str = "") -> bool:
        """Mark the worker's job done or failed, with its timings; False if it is not that worker's.

        The timings are stored, not derived at read time: /metrics histograms
        them on every scrape, and date arithmetic per row (a Python function
        on SQLite) made a scrape cost a second at 10,000 jobs.
        """
        mine = self.filter(pk=job_id, worker_id=worker_id)
        row = mine.values("created_at", "claimed_at").first()
        if row is None:
            return False
        now = timezone.now()
        changes: dict[str, Any] = {"status": status, "finished_at": now}
        if error:
            changes["error"] = error[:2000]
        if row["claimed_at"] is not None:
            changes["acquire_seconds"] = (row["claimed_at"] - row["created_at"]).total_seconds()
        if status == BotJobStatus.DONE:
            changes["join_seconds"] = (now - row["created_at"]).total_seconds()
            if row["claimed_at"] is not None:
                changes["spawn_seconds"] = (now - row["claimed_at"]).total_seconds()
        return bool(mine.update(**changes))


class BotJob(models.Model):
    """A queued request for a bot to join a room (the embedded queue's storage)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="bot_jobs")
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=BotJobStatus.choices,
                              default=BotJobStatus.QUEUED, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker_id = models.CharField(max_length=120, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when the job finishes (BotJobQuerySet.finish), in seconds.
    acquire_seconds = models.FloatField(null=True, blank=True, help_text="Queued until a worker took it.")
    spawn_seconds = models.FloatField(null=True, blank=True, help_text="Taken until the bot was ready.")
    join_seconds = models.FloatField(null=True, blank=True, help_text="Queued until the bot was ready.")

    objects = BotJobQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"bot job {self.id} ({self.status})"


class OpsEventKind(models.TextChoices):
    """Operational facts the metrics count that no session event records."""

    ROOM_CREATED = "room.created", "Room created"
    ROOM_REUSED = "room.reused", "Room reused"
    # Tokens other than the one each room request issues (the bot's Daily meeting tokens).
    TOKEN_ISSUED = "token.issued", "Token issued"
    ERROR = "error", "Error"
    # A conversation ended (user left, bot lost, session over); value = seconds it lasted.
    CONVERSATION = "conversation", "Conversation ended"
    # A join refused before any job was queued; label = why (no_capacity).
    JOIN_REFUSED = "join.refused", "Join refused"


class ErrorKind(models.TextChoices):
    """What failed, for the error-rate metrics: room creation, bot join, a lost bot and the rest."""

    ROOM_CREATION = "room_creation", "Room creation"
    BOT_JOIN = "bot_join", "Bot join"
    AUDIO = "audio", "Audio routing"
    TOKEN_EXPIRY = "token_expiry", "Token expiry"
    BOT_LOST = "bot_lost", "Bot lost mid-session"
    PIPELINE = "pipeline", "Bot pipeline"


class OpsEvent(models.Model):
    """One counted fact (room made or reused, token issued, error), for /metrics and the dashboard.

    Append-only rows rather than counters in a row: many servers and workers
    write at once, and inserts never contend the way one hot counter row would.
    """

    kind = models.CharField(max_length=24, choices=OpsEventKind.choices)
    # The provider for rooms and tokens; the ErrorKind for errors.
    label = models.CharField(max_length=32)
    detail = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="Seconds, for conversations.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    session = models.ForeignKey(VoiceSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["kind", "created_at"], name="opsevent_kind_time"),
                   # /metrics counts by kind and label: answered from this index alone.
                   models.Index(fields=["kind", "label"], name="opsevent_kind_label")]
        constraints = [models.CheckConstraint(condition=models.Q(kind__in=OpsEventKind.values),
                                              name="opsevent_kind_valid")]

    def __str__(self) -> str:
        return f"{self.kind} {self.label}"


class BotWorker(models.Model):
    """A running `manage.py runbotworker` process, as it advertises itself.

    The heartbeat is how the rest of the system learns a worker died: a worker
    whose heartbeat is older than VOICE_WORKER_DEAD_AFTER loses its sessions.
    """

    worker_id = models.CharField(max_length=120, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    control_url = models.CharField(max_length=300, help_text="Where servers reach this worker (signalling, control).")
    capacity = models.PositiveSmallIntegerField(default=2)
    active_sessions = models.PositiveSmallIntegerField(default=0)
    load = models.FloatField(default=0.0, help_text="Its CPU use over the last few seconds, per usable core (0-1).")
    admitting = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="How many more sessions it takes now (its load allowing); empty: unknown.")
    offers = models.JSONField(default=dict, blank=True,
                              help_text='The providers it runs, per stage: {"stt": ["local", "openai", ...], ...}.')
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-heartbeat_at"]
        # Moved here from the voicebot app with its rows: the table keeps its name.
        db_table = "voicebot_botworker"

    def __str__(self) -> str:
        return self.worker_id

    @property
    def free_slots(self) -> int:
        return max(0, self.capacity - self.active_sessions)
