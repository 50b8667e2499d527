"""manage.py prunevoiceevents: old events go, live sessions' events and recent ones stay."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from voicesessions import retention
from voicesessions.events import record_event
from voicesessions.models import OpsEvent, OpsEventKind, SessionEvent, VoiceEventType, VoiceRoom, VoiceSession

pytestmark = pytest.mark.django_db


def _session(user, status: str) -> VoiceSession:
    room, _ = VoiceRoom.objects.get_or_create(user=user, defaults={
        "provider": "local", "url": "http://x/voice/rooms/v", "expires_at": timezone.now() + dt.timedelta(days=1)})
    return VoiceSession.objects.create(user=user, room=room, status=status)


def test_prune_keeps_recent_rows_and_live_sessions(make_user, monkeypatch):
    old = timezone.now() - dt.timedelta(days=100)
    ended = _session(make_user("a"), "ended")
    live = _session(make_user("b"), "active")
    for session in (ended, live):
        for _ in range(3):
            record_event(session, VoiceEventType.TRANSCRIPT, {"role": "user", "text": "x", "final": True})
    SessionEvent.objects.update(created_at=old)
    record_event(ended, VoiceEventType.SESSION_END, {})  # recent
    OpsEvent.objects.create(kind=OpsEventKind.TOKEN_ISSUED, label="local", created_at=old)
    OpsEvent.objects.create(kind=OpsEventKind.TOKEN_ISSUED, label="local")

    dry = StringIO()
    call_command("prunevoiceevents", "--days", "90", "--dry-run", stdout=dry)
    assert "would delete 3 session event(s) and 1 ops event(s)" in dry.getvalue()
    assert SessionEvent.objects.count() == 7

    monkeypatch.setattr(retention, "BATCH", 2)  # several batches, each reported
    out = StringIO()
    call_command("prunevoiceevents", "--days", "90", stdout=out)
    assert "pruning session events: 2/3" in out.getvalue() and "pruning session events: 3/3" in out.getvalue()
    assert "pruned 3 session event(s) and 1 ops event(s)" in out.getvalue()
    assert SessionEvent.objects.filter(session=live).count() == 3  # live: kept whatever their age
    assert list(SessionEvent.objects.filter(session=ended).values_list("type", flat=True)) == ["voice.session.end"]
    assert OpsEvent.objects.count() == 1


def test_days_must_be_positive():
    with pytest.raises(CommandError):
        call_command("prunevoiceevents", "--days", "0")
