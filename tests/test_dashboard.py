"""The staff dashboard (figures, rollback) and session history in the admin (transcript, export)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from assistants.models import VoiceRollout
from voicesessions import dashboard, opsevents
from voicesessions.events import record_event
from voicesessions.models import (BotJob, BotJobStatus, ErrorKind, OpsEvent, OpsEventKind, VoiceEventType,
                                  VoiceRoom, VoiceSession)

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


# admin_client and admin_user: pytest-django's (a signed-in superuser).


def _session(user, assistant, created_at: dt.datetime, job_ms: float | None = None) -> VoiceSession:
    room, _ = VoiceRoom.objects.get_or_create(user=user, defaults={
        "provider": "local", "url": f"http://127.0.0.1:8000/rooms/voice-{user.pk}",
        "expires_at": timezone.now() + dt.timedelta(days=1)})
    session = VoiceSession.objects.create(user=user, room=room, assistant=assistant, created_at=created_at,
                                          status="ended")
    if job_ms is not None:
        BotJob.objects.create(session=session, status=BotJobStatus.DONE, created_at=created_at,
                              claimed_at=created_at, finished_at=created_at + dt.timedelta(milliseconds=job_ms),
                              acquire_seconds=0, spawn_seconds=job_ms / 1000, join_seconds=job_ms / 1000)
    return session


def test_only_staff_see_the_dashboard(make_user):
    assert Client().get(URL).status_code == 302  # to the admin login
    member = Client()
    member.force_login(make_user("member"))
    assert member.get(URL).status_code == 302


def test_figures_per_hour_and_totals(admin_client, make_user, assistant):
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    users = [make_user(f"u{i}") for i in range(4)]
    _session(users[0], assistant, now - dt.timedelta(hours=2), job_ms=100)
    _session(users[1], assistant, now - dt.timedelta(hours=2), job_ms=300)
    _session(users[2], assistant, now, job_ms=200)
    _session(users[3], assistant, now - dt.timedelta(days=3), job_ms=9000)  # outside 24 h
    for kind, at in ((OpsEventKind.ROOM_CREATED, now - dt.timedelta(hours=2)),
                     (OpsEventKind.ROOM_REUSED, now - dt.timedelta(hours=2)),
                     (OpsEventKind.ROOM_CREATED, now)):
        OpsEvent.objects.create(kind=kind, label="local", created_at=at)
    OpsEvent.objects.create(kind=OpsEventKind.CONVERSATION, label="local", value=60, created_at=now)
    OpsEvent.objects.create(kind=OpsEventKind.CONVERSATION, label="local", value=120, created_at=now)
    OpsEvent.objects.create(kind=OpsEventKind.ERROR, label=ErrorKind.AUDIO, created_at=now)

    figures = dashboard.stats("24h", now=now)
    assert figures["period"]["bucket"] == "hour"
    assert len(figures["labels"]) == 25  # hours from 24 h ago to now, both included
    assert figures["sessionsPerHour"]["values"][-3:] == [2, 0, 1]
    assert sum(figures["sessionsPerDay"]["values"]) == 3
    assert figures["avgDurationSeconds"][-1] == 90.0
    assert figures["reuseRatePercent"][-3:] == [50.0, None, 0.0]
    assert figures["joinLatencyP50Ms"][-3] == 100.0 and figures["joinLatencyP99Ms"][-3] == 300.0
    assert figures["errorRatePercent"][-1] == 100.0
    totals = figures["totals"]
    assert totals["sessions"] == 3 and totals["joins"] == 3
    assert totals["joinLatencyP50Ms"] == 200.0 and totals["joinLatencyP99Ms"] == 300.0
    assert totals["reuseRatePercent"] == 33.3 and totals["avgDurationSeconds"] == 90.0
    assert totals["errorsByKind"]["audio"] == 1 and totals["errorsByKind"]["room_creation"] == 0
    assert dashboard.stats("7d", now=now)["totals"]["joinLatencyP99Ms"] == 9000.0

    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for canvas in ("chart-sessions-hour", "chart-sessions-day", "chart-duration", "chart-reuse",
                   "chart-latency", "chart-errors"):
        assert f'id="{canvas}"' in html
    assert "vendor/chart.js/chart.umd.min.js" in html
    assert json.loads(admin_client.get(URL + "?period=48h&format=json").content)["period"]["key"] == "48h"


def test_an_unknown_period_is_a_400_naming_it(admin_client):
    response = admin_client.get(URL + "?period=1y&format=json")
    assert response.status_code == 400
    assert "period" in response.json()["fields"]
    assert admin_client.get(URL + "?period=1y").status_code == 400


def test_one_click_rollback_to_zero(admin_user, assistant):
    VoiceRollout.load()
    admin = admin_user
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    page = client.get(URL)
    assert 'id="rollout-percentage">100%' in page.content.decode()
    token = page.cookies["csrftoken"].value
    assert client.post(URL, {"rollback": "1"}).status_code == 403  # no CSRF token
    response = client.post(URL, {"rollback": "1", "period": "24h", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert VoiceRollout.load().percentage == 0
    assert LogEntry.objects.filter(user=admin, change_message__contains="100% -> 0%").exists()
    assert 'id="rollout-percentage">0%' in client.get(URL).content.decode()
    # The assistant is out of the rollout at once.
    assert client.get("/api/voice/config?assistant=pearl").json()["usePipecatVoice"] is False
    assert client.post(URL, {"percentage": "140", "csrfmiddlewaretoken": token}).status_code == 400
    assert client.post(URL, {"percentage": "ten", "csrfmiddlewaretoken": token}).status_code == 400
    assert client.post(URL, {"percentage": "25", "csrfmiddlewaretoken": token}).status_code == 302
    assert VoiceRollout.load().percentage == 25


def test_staff_without_the_rollout_permission_cannot_roll_back(make_user):
    VoiceRollout.load()
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_voicesession"))
    client = Client()
    client.force_login(viewer)
    page = client.get(URL)
    assert page.status_code == 200 and 'id="rollback"' not in page.content.decode()
    assert client.post(URL, {"rollback": "1"}).status_code == 403
    assert VoiceRollout.load().percentage == 100


def _conversation(user, assistant) -> VoiceSession:
    session = _session(user, assistant, timezone.now())
    for role, text in (("user", "What is the capital of France?"), ("assistant", "Paris.")):
        record_event(session, VoiceEventType.TRANSCRIPT, {"role": role, "text": text[:5], "final": False})
        record_event(session, VoiceEventType.TRANSCRIPT, {"role": role, "text": text, "final": True})
    record_event(session, VoiceEventType.AUDIO_LEVEL, {"source": "user", "level": 0.3})
    record_event(session, VoiceEventType.TOOL_CALL, {"name": "create_note", "toolCallId": "t1", "arguments": {}})
    opsevents.record_error(ErrorKind.AUDIO, detail="ice_failed: WebRTC connection failed", session=session)
    return session


def test_session_history_shows_the_transcript_and_exports_json(admin_client, make_user, assistant):
    alice, bob = make_user("alice-h"), make_user("bob-h")
    session = _conversation(alice, assistant)
    _conversation(bob, None)

    page = admin_client.get(f"/admin/voicesessions/voicesession/{session.pk}/change/").content.decode()
    assert "What is the capital of France?" in page and "Paris." in page
    assert "voice.tool.call" in page and "ice_failed" in page
    assert "voice.audio.level" not in page  # left out of the timeline

    found = admin_client.get("/admin/voicesessions/voicesession/?q=alice-h").content.decode()
    assert str(session.pk) in found and "bob-h" not in found
    by_assistant = admin_client.get("/admin/voicesessions/voicesession/?q=pearl").content.decode()
    assert "alice-h" in by_assistant and "bob-h" not in by_assistant

    one = admin_client.get(f"/admin/voicesessions/voicesession/{session.pk}/export/")
    assert one["Content-Disposition"].startswith("attachment;")
    [record] = json.loads(b"".join(one.streaming_content))
    assert record["sessionId"] == str(session.pk) and record["username"] == "alice-h"
    assert [(line["role"], line["text"]) for line in record["transcript"]] == [
        ("user", "What is the capital of France?"), ("assistant", "Paris.")]
    assert record["errors"][0]["kind"] == "audio"
    assert "voice.tool.call" in [e["type"] for e in record["events"]]
    assert "voice.audio.level" not in [e["type"] for e in record["events"]]

    every = admin_client.post("/admin/voicesessions/voicesession/", {
        "action": "export_json", "_selected_action": [str(s.pk) for s in VoiceSession.objects.all()]})
    records = json.loads(b"".join(every.streaming_content))
    assert {r["username"] for r in records} == {"alice-h", "bob-h"}


def test_admin_index_links_the_dashboard(admin_client):
    assert 'href="/admin/dashboard/"' in admin_client.get("/admin/").content.decode()
