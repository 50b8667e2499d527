"""POST /api/bot/join and the session endpoints."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from voicesessions.models import BotJob, SessionEvent, SessionStatus, VoiceSession
from voicesessions.queue import DatabaseBotJobQueue

pytestmark = pytest.mark.django_db

JOIN = {"voiceOnly": True, "sessionPersistence": 60, "personalityId": "pearl", "persona": "Pearl",
        "tenantId": "t1", "voice": "en_US-amy", "voiceParameters": {"speed": 1.1, "stability": 0.5}}


@pytest.fixture
def room(api):
    return api.post("/api/voice/room", {}, format="json").json()


def test_join_records_connecting_session_and_queues_a_job(api, user, room):
    response = api.post("/api/bot/join", {**JOIN, "room_url": room["roomUrl"], "sessionUserId": str(user.pk)},
                        format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "connecting" and body["queued"] is True and body["reused"] is False
    session = VoiceSession.objects.get(pk=body["sessionId"])
    assert session.status == SessionStatus.CONNECTING
    assert session.voice_only is True and session.session_persistence == 60
    assert session.voice_parameters == {"speed": 1.1, "stability": 0.5}
    job = BotJob.objects.get(pk=body["jobId"])
    assert job.payload["voice_only"] is True and job.payload["room_url"] == room["roomUrl"]
    assert job.payload["session_persistence"] == 60 and job.payload["voice"] == "en_US-amy"
    assert "token" not in job.payload
    assert [e.type for e in session.events.all()] == ["voice.session.start"]


def test_join_uses_assistant_defaults(api, room, assistant):
    assistant.voice_persistence = 33
    assistant.voice_max_duration = 600
    assistant.save()
    body = api.post("/api/bot/join", {"assistant": "pearl"}, format="json").json()
    session = VoiceSession.objects.get(pk=body["sessionId"])
    assert session.session_persistence == 33 and session.max_duration == 600
    assert session.persona == "Pearl" and session.assistant == assistant
    job = BotJob.objects.get(session=session)
    assert job.payload["system_prompt"] == "Be brief." and job.payload["max_duration"] == 600


def test_second_join_reuses_the_live_session_no_second_bot(api, room):
    first = api.post("/api/bot/join", JOIN, format="json").json()
    second = api.post("/api/bot/join", JOIN, format="json")
    assert second.status_code == 200
    assert second.json()["sessionId"] == first["sessionId"] and second.json()["queued"] is False
    assert BotJob.objects.count() == 1


def test_rejoin_after_leaving_reconnects_same_session(api, room):
    first = api.post("/api/bot/join", JOIN, format="json").json()
    api.delete("/api/voice/room", {"teardownDelay": 300}, format="json")
    assert VoiceSession.objects.get(pk=first["sessionId"]).status == SessionStatus.INACTIVE
    api.post("/api/voice/room", {}, format="json")
    again = api.post("/api/bot/join", JOIN, format="json")
    assert again.status_code == 202
    assert again.json()["sessionId"] == first["sessionId"] and again.json()["reused"] is True
    assert VoiceSession.objects.get(pk=first["sessionId"]).status == SessionStatus.CONNECTING
    assert BotJob.objects.count() == 2


def test_unavailable_session_is_replaced_by_a_new_join(api, room):
    first = api.post("/api/bot/join", JOIN, format="json").json()
    session = VoiceSession.objects.get(pk=first["sessionId"])
    session.transition_to(SessionStatus.UNAVAILABLE, reason="worker_lost")
    second = api.post("/api/bot/join", JOIN, format="json").json()
    assert second["sessionId"] != first["sessionId"] and second["status"] == "connecting"
    session.refresh_from_db()
    assert session.status == SessionStatus.ENDED and session.end_reason == "replaced"


def test_join_without_room_is_404(api):
    response = api.post("/api/bot/join", JOIN, format="json")
    assert response.status_code == 404
    assert "room_url" in response.json()["fields"]


def test_join_into_another_users_room_is_refused(api, other_api, room):
    theirs = other_api.post("/api/voice/room", {}, format="json").json()
    response = api.post("/api/bot/join", {**JOIN, "room_url": theirs["roomUrl"]}, format="json")
    assert response.status_code == 404
    assert not VoiceSession.objects.exists()


def test_join_for_another_user_id_is_403(api, room, other_user):
    response = api.post("/api/bot/join", {**JOIN, "sessionUserId": str(other_user.pk)}, format="json")
    assert response.status_code == 403
    assert "sessionUserId" in response.json()["fields"]


def test_join_into_torn_down_room_is_409(api, room):
    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")
    response = api.post("/api/bot/join", JOIN, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "room_not_ready"


@pytest.mark.parametrize("payload, field", [
    ({"voiceOnly": "maybe"}, "voiceOnly"),
    ({"sessionPersistence": -5}, "sessionPersistence"),
    ({"sessionPersistence": 86401}, "sessionPersistence"),
    ({"voiceParameters": {"speed": 99}}, "voiceParameters"),
    ({"voiceParameters": {"warp": 1}}, "voiceParameters"),
    ({"voiceParameters": "fast"}, "voiceParameters"),
    ({"persona": "x" * 500}, "persona"),
    ({"voiceonly": True}, "voiceonly"),
    ({"assistant": "ghost"}, "assistant"),
])
def test_bad_join_input_is_a_400_naming_the_field(api, room, assistant, payload, field):
    response = api.post("/api/bot/join", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not VoiceSession.objects.exists()


def test_non_object_body_is_400(api, room):
    response = api.post("/api/bot/join", [1, 2], format="json")
    assert response.status_code == 400


def test_anonymous_join_is_401():
    assert APIClient().post("/api/bot/join", JOIN, format="json").status_code == 401


def test_session_detail_list_events_and_isolation(api, other_api, room):
    sid = api.post("/api/bot/join", JOIN, format="json").json()["sessionId"]
    detail = api.get(f"/api/voice/sessions/{sid}")
    assert detail.status_code == 200
    assert detail.json()["status"] == "connecting" and detail.json()["voiceOnly"] is True
    assert [s["sessionId"] for s in api.get("/api/voice/sessions").json()] == [sid]
    events = api.get(f"/api/voice/sessions/{sid}/events").json()
    assert events[0]["type"] == "voice.session.start" and events[0]["sessionId"] == sid
    assert api.get(f"/api/voice/sessions/{sid}/events", {"after": events[-1]["id"]}).json() == []
    assert api.get(f"/api/voice/sessions/{sid}/events", {"after": "x"}).status_code == 400
    # another user cannot see, pause or resume it, nor learn that it exists
    assert other_api.get(f"/api/voice/sessions/{sid}").status_code == 404
    assert other_api.get(f"/api/voice/sessions/{sid}/events").status_code == 404
    assert other_api.post(f"/api/voice/sessions/{sid}/pause").status_code == 404
    assert other_api.get("/api/voice/sessions").json() == []


def test_pause_and_resume(api, room):
    sid = api.post("/api/bot/join", JOIN, format="json").json()["sessionId"]
    refused = api.post(f"/api/voice/sessions/{sid}/pause")
    assert refused.status_code == 409 and refused.json()["error"] == "illegal_transition"
    VoiceSession.objects.get(pk=sid).transition_to(SessionStatus.ACTIVE)
    paused = api.post(f"/api/voice/sessions/{sid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["pauseReason"] == "user"
    resumed = api.post(f"/api/voice/sessions/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert api.post(f"/api/voice/sessions/{sid}/resume").status_code == 409
    types = list(SessionEvent.objects.filter(session_id=sid).values_list("type", flat=True))
    assert types.count("voice.session.status") == 2  # paused, active (activation done directly above)


def test_unknown_session_is_404(api):
    assert api.get("/api/voice/sessions/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/api/voice/sessions/not-a-uuid").status_code == 404


def test_queue_claim_ack_and_requeue(api, room):
    import datetime as dt

    api.post("/api/bot/join", JOIN, format="json")
    queue = DatabaseBotJobQueue()
    assert queue.pending() == 1
    claimed = queue.claim("worker-a")
    assert claimed is not None and claimed.spec.voice_only is True and claimed.attempts == 1
    assert queue.claim("worker-b") is None  # nobody else gets the same job
    assert queue.requeue_stale(dt.timedelta(seconds=-1)) == 1  # worker-a presumed dead
    again = queue.claim("worker-b")
    assert again.job_id == claimed.job_id and again.attempts == 2
    queue.ack(again.job_id, "worker-a")  # a stale worker's ack does not count
    assert BotJob.objects.get(pk=again.job_id).status == "claimed"
    queue.ack(again.job_id, "worker-b")
    assert BotJob.objects.get(pk=again.job_id).status == "done"


def test_personality_id_picks_the_prompt_when_no_assistant_is_named(api, room, assistant):
    body = api.post("/api/bot/join", {"personalityId": "pearl"}, format="json").json()
    job = BotJob.objects.get(pk=body["jobId"])
    assert job.payload["system_prompt"] == "Be brief." and job.payload["personality_id"] == "pearl"
