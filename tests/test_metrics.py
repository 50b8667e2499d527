"""/metrics: who may scrape it, and each series counting what happened, from the database."""
from __future__ import annotations

import datetime as dt

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from tests.livesrv import metric as value
from tests.livesrv import parse_metrics
from tests.samples import VALID_SDP
from voicesessions import sessions
from voicesessions.models import BotJob, BotJobStatus, BotWorker, SessionStatus, VoiceEventType, VoiceSession
from voicesessions.events import record_event
from voicesessions.providers import RoomProviderError

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(**extra) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse_metrics(response.content.decode())


def test_only_allowed_addresses_or_the_token_may_scrape(settings):
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    settings.VOICE_METRICS_ALLOWED_IPS = ["203.0.113.0/24"]
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 200

    settings.VOICE_METRICS_TOKEN = "scrape-secret"
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403  # the token now rules
    assert Client(REMOTE_ADDR="203.0.113.9").get(
        "/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client(REMOTE_ADDR="203.0.113.9").get(
        "/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").post("/metrics").status_code == 405


def test_every_series_counts_what_happened(api, user, assistant, monkeypatch):
    before = scrape()
    # Rooms: one created, then reused; each answer carries a token.
    assert api.post("/api/voice/room", {}, format="json").json()["reused"] is False
    assert api.post("/api/voice/room", {}, format="json").json()["reused"] is True
    join = api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    assert join.status_code == 202
    session = VoiceSession.objects.get(pk=join.json()["sessionId"])

    # A worker took the job 0.2 s after it was queued; the bot is ready 0.6 s later (now).
    job = BotJob.objects.get(session=session)
    now = timezone.now()
    BotJob.objects.filter(pk=job.pk).update(status=BotJobStatus.CLAIMED, worker_id="w1",
                                            created_at=now - dt.timedelta(seconds=0.8),
                                            claimed_at=now - dt.timedelta(seconds=0.6))
    assert BotJob.objects.finish(job.pk, "w1", status=BotJobStatus.DONE)
    assert not BotJob.objects.finish(job.pk, "another-worker", status=BotJobStatus.FAILED)
    BotWorker.objects.create(worker_id="w1", hostname="h", pid=1, control_url="http://127.0.0.1:1",
                             capacity=4, active_sessions=1)
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_ready", bot_worker_id="w1")
    record_event(session, VoiceEventType.TOOL_CALL, {"name": "create_note", "toolCallId": "t1", "arguments": {}})
    during = scrape()
    assert value(during, "voice_sessions_active", status="active") == value(before, "voice_sessions_active",
                                                                             status="active") + 1
    assert value(during, "voice_bot_pool_utilization", worker="w1") == 0.25
    assert value(during, "voice_bot_pool_sessions", worker="w1") == 1
    assert value(during, "voice_provider_participants", provider="local") == 2
    assert value(during, "voice_provider_active_rooms", provider="local") == 1

    # The conversation lasts 90 s, then the user leaves.
    VoiceSession.objects.filter(pk=session.pk).update(connected_at=timezone.now() - dt.timedelta(seconds=90))
    assert api.delete("/api/voice/room", {"teardownDelay": 60}, format="json").status_code == 200
    after = scrape()

    assert value(after, "voice_sessions_created_total", mode="voice_only") == 1
    assert value(after, "voice_sessions_created_total", mode="multi_user") == 0
    assert value(after, "voice_sessions_voice_only_ratio") == 1.0
    assert value(after, "voice_sessions_active", status="inactive") == 1
    assert value(after, "voice_room_requests_total", result="created", provider="local") == 1
    assert value(after, "voice_room_requests_total", result="reused", provider="local") == 1
    assert value(after, "voice_room_reuse_ratio") == 0.5
    assert value(after, "voice_tokens_issued_total", provider="local") == 2
    # 90 s falls in the 120 s bucket, not the 60 s one.
    assert value(after, "voice_session_duration_seconds_bucket", le="60.0") == 0
    assert value(after, "voice_session_duration_seconds_bucket", le="120.0") == 1
    assert value(after, "voice_session_duration_seconds_count") == 1
    assert 89 < value(after, "voice_session_duration_seconds_sum") < 95
    assert 1.45 < value(after, "voice_provider_minutes_total", provider="local") < 1.6
    for name, low_bucket, high_bucket, seconds in (("voice_bot_join_latency_seconds", "0.5", "1.0", 0.8),
                                                   ("voice_bot_acquire_seconds", "0.1", "0.25", 0.2),
                                                   ("voice_bot_spawn_seconds", "0.5", "1.0", 0.6)):
        assert value(after, f"{name}_bucket", le=low_bucket) == 0, name
        assert value(after, f"{name}_bucket", le=high_bucket) == 1, name
        assert value(after, f"{name}_sum") == pytest.approx(seconds, abs=0.05), name
    assert value(after, "voice_tool_calls_total", tool="create_note") == 1

    # Errors: Daily refusing to make a room...
    def failing_create_room(self, *args, **kwargs):
        raise RoomProviderError("Daily is down", kind="unavailable", status=503)
    from voicesessions.providers.local import LocalRoomProvider
    monkeypatch.setattr(LocalRoomProvider, "create_room", failing_create_room)
    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")  # the room is gone: next request makes one
    assert api.post("/api/voice/room", {}, format="json").status_code == 503
    errors = scrape()
    assert value(errors, "voice_errors_total", kind="room_creation") == 1
    for kind in ("bot_join", "audio", "token_expiry", "bot_lost", "pipeline"):
        assert (("voice_errors_total", (("kind", kind),)) in errors), kind  # every kind is exported, zero or not


async def test_errors_only_the_browser_sees_are_reported_over_the_websocket(user):
    from asgiref.sync import sync_to_async
    from rest_framework.authtoken.models import Token

    from voiceproject.asgi import application

    token = await sync_to_async(lambda: Token.objects.create(user=user).key)()
    before = await sync_to_async(scrape)()
    ws = WebsocketCommunicator(application, "/ws/voice/", headers=[(b"authorization", f"Token {token}".encode())])
    connected, _ = await ws.connect()
    assert connected
    await ws.receive_json_from()  # voice.connected
    await ws.send_json_to({"type": "client.error", "kind": "audio", "code": "microphone_unavailable",
                           "detail": "NotAllowedError"})
    await ws.send_json_to({"type": "client.error", "kind": "token_expiry", "code": "daily_token_expired"})
    await ws.send_json_to({"type": "client.error", "kind": "room_creation"})  # not the browser's to report
    refused = await ws.receive_json_from()
    assert refused["payload"]["field"] == "kind"
    await ws.disconnect()
    after = await sync_to_async(scrape)()
    assert value(after, "voice_errors_total", kind="audio") == value(before, "voice_errors_total", kind="audio") + 1
    assert value(after, "voice_errors_total", kind="token_expiry") == 1
    assert value(after, "voice_errors_total", kind="room_creation") == 0


def test_an_expired_room_token_counts_as_a_token_expiry(api, settings):
    settings.VOICE_TOKEN_TTL = 0
    token = api.post("/api/voice/room", {}, format="json").json()["token"]
    refused = Client().post("/api/voice/webrtc/offer", {"sdp": "v=0", "type": "offer"},
                            content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert refused.status_code == 401
    assert value(scrape(), "voice_errors_total", kind="token_expiry") == 1


def test_an_offer_no_worker_takes_counts_as_a_bot_join_error(api, settings):
    settings.VOICE_OFFER_WAIT_SECONDS = 0.2
    token = api.post("/api/voice/room", {}, format="json").json()["token"]
    api.post("/api/bot/join", {}, format="json")
    refused = Client().post("/api/voice/webrtc/offer", {"sdp": VALID_SDP, "type": "offer"},
                            content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert refused.status_code == 503 and refused.json()["error"] == "bot_unavailable"
    assert value(scrape(), "voice_errors_total", kind="bot_join") == 1


def test_a_worker_lost_mid_session_counts_as_bot_lost(api, user):
    from voicesessions import workerloss

    api.post("/api/voice/room", {}, format="json")
    session = VoiceSession.objects.get(pk=api.post("/api/bot/join", {}, format="json").json()["sessionId"])
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_ready", bot_worker_id="w-gone")
    assert workerloss.fail_sessions_of("w-gone", "worker_lost") == 1
    after = scrape()
    assert value(after, "voice_errors_total", kind="bot_lost") == 1
    assert value(after, "voice_sessions_active", status="unavailable") == 1
    assert value(after, "voice_session_duration_seconds_count") == 1  # the conversation ended there


def test_a_worker_that_stops_while_its_user_is_away_leaves_the_session_unavailable(api, user):
    """A user left (inactive, inside the persistence window) just as the worker stopped: the
    worker's shutdown raised IllegalTransition (inactive -> unavailable) and crashed."""
    from voicesessions import workerloss

    api.post("/api/voice/room", {}, format="json")
    session = VoiceSession.objects.get(pk=api.post("/api/bot/join", {}, format="json").json()["sessionId"])
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_ready", bot_worker_id="w-gone")
    sessions.change_status(session, SessionStatus.INACTIVE, reason="user_left")
    assert workerloss.fail_sessions_of("w-gone", "worker_stopped") == 1
    session.refresh_from_db()
    assert session.status == SessionStatus.UNAVAILABLE  # a return brings a new bot
    sessions.change_status(session, SessionStatus.CONNECTING, reason="rejoin")
