"""POST/DELETE /api/voice/room: get-or-create, reuse, leave, auth boundaries."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from assistants.models import VoiceRollout
from voicesessions.models import RoomState, SessionStatus, VoiceRoom
from voicesessions.tokens import InvalidRoomToken, verify_room_token

pytestmark = pytest.mark.django_db


def test_anonymous_gets_401_json():
    response = APIClient().post("/api/voice/room", {}, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_token_auth_works(user):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.post("/api/voice/room", {}, format="json").status_code == 200


def test_first_call_creates_second_reuses(api, user):
    first = api.post("/api/voice/room", {}, format="json").json()
    assert first["reused"] is False
    assert first["roomName"] == f"voice-{user.pk}"
    assert first["roomUrl"].endswith(f"/voice/rooms/voice-{user.pk}")
    assert first["privacy"] == "private" and first["maxParticipants"] == 2
    expires = dt.datetime.fromisoformat(first["expiresAt"])
    assert abs((expires - timezone.now()) - dt.timedelta(days=30)) < dt.timedelta(minutes=1)
    second = api.post("/api/voice/room", {}, format="json").json()
    assert second["reused"] is True
    assert second["roomUrl"] == first["roomUrl"]
    assert VoiceRoom.objects.filter(user=user).count() == 1


def test_token_admits_only_this_user_to_this_room(api, user):
    body = api.post("/api/voice/room", {}, format="json").json()
    claims = verify_room_token(body["token"], body["roomName"])
    assert claims.user_id == str(user.pk)
    with pytest.raises(InvalidRoomToken):
        verify_room_token(body["token"], "voice-999")
    with pytest.raises(InvalidRoomToken):
        verify_room_token(body["token"][:-2] + "xx", body["roomName"])


def test_two_users_get_two_rooms(api, other_api, user, other_user):
    a = api.post("/api/voice/room", {}, format="json").json()
    b = other_api.post("/api/voice/room", {}, format="json").json()
    assert a["roomName"] == f"voice-{user.pk}" and b["roomName"] == f"voice-{other_user.pk}"


def test_assistant_config_applies_to_room(api, assistant):
    assistant.voice_persistence = 42
    assistant.voice_room_privacy = "public"
    assistant.save()
    body = api.post("/api/voice/room", {"assistant": "pearl"}, format="json").json()
    assert body["persistAfterLeave"] == 42 and body["privacy"] == "public"


@pytest.mark.parametrize("payload, field", [
    ({"assistant": "nobody"}, "assistant"),
    ({"assistant": "not a slug!"}, "assistant"),
    ({"roomName": "voice-1"}, "roomName"),
])
def test_bad_room_input_names_the_field(api, assistant, payload, field):
    response = api.post("/api/voice/room", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_assistant_outside_rollout_is_refused(api, assistant):
    rollout = VoiceRollout.load()
    rollout.percentage = 0
    rollout.save()
    response = api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "voice_not_enabled"
    assert "assistant" in response.json()["fields"]


def test_malformed_json_is_a_400(api):
    response = api.generic("POST", "/api/voice/room", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_leave_schedules_teardown_and_return_cancels_it(api, user):
    room = api.post("/api/voice/room", {}, format="json").json()
    left = api.delete("/api/voice/room", {"roomUrl": room["roomUrl"], "teardownDelay": 120}, format="json")
    assert left.status_code == 200
    body = left.json()
    assert body["teardownDelay"] == 120 and body["state"] == "live"
    stored = VoiceRoom.objects.get(user=user)
    assert abs((stored.teardown_at - timezone.now()) - dt.timedelta(seconds=120)) < dt.timedelta(seconds=5)
    again = api.post("/api/voice/room", {}, format="json").json()
    assert again["reused"] is True
    stored.refresh_from_db()
    assert stored.teardown_at is None


def test_leave_with_zero_delay_tears_down_now(api, user):
    room = api.post("/api/voice/room", {}, format="json").json()
    api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    body = api.delete("/api/voice/room", {"teardownDelay": 0}, format="json").json()
    assert body["state"] == RoomState.DELETED
    assert user.voice_sessions.get().status == SessionStatus.ENDED
    again = api.post("/api/voice/room", {}, format="json").json()
    assert again["reused"] is False and again["roomUrl"] == room["roomUrl"]


def test_leave_defaults_to_room_persistence(api, user, assistant):
    assistant.voice_persistence = 77
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    assert api.delete("/api/voice/room", {}, format="json").json()["teardownDelay"] == 77


def test_leave_uses_the_sessions_persistence_over_the_rooms(api, user, assistant):
    """One leave rule: the live session's sessionPersistence (its JoinRequest's) beats the
    assistant's default, for DELETE /api/voice/room and for the worker's peer-left alike."""
    from voicesessions import sessions

    assistant.voice_persistence = 77
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    joined = api.post("/api/bot/join", {"voiceOnly": True, "sessionPersistence": 9}, format="json").json()
    body = api.delete("/api/voice/room", {}, format="json").json()
    assert body["teardownDelay"] == 9
    stored = VoiceRoom.objects.get(user=user)
    assert abs((stored.teardown_at - timezone.now()) - dt.timedelta(seconds=9)) < dt.timedelta(seconds=5)
    # The peer's connection closing afterwards keeps the API's deadline and changes nothing.
    before = stored.teardown_at
    assert sessions.peer_left(joined["sessionId"]) is None
    stored.refresh_from_db()
    assert stored.teardown_at == before


def test_a_peer_leaving_applies_the_same_rule(api, user, assistant):
    from voicesessions import sessions

    assistant.voice_persistence = 77
    assistant.save()
    api.post("/api/voice/room", {"assistant": "pearl"}, format="json")
    joined = api.post("/api/bot/join", {"voiceOnly": True, "sessionPersistence": 11}, format="json").json()
    assert sessions.peer_left(joined["sessionId"]) == 11
    stored = VoiceRoom.objects.get(user=user)
    assert abs((stored.teardown_at - timezone.now()) - dt.timedelta(seconds=11)) < dt.timedelta(seconds=5)
    assert user.voice_sessions.get().status == SessionStatus.INACTIVE


def test_leaving_another_users_room_is_404(api, other_api):
    theirs = other_api.post("/api/voice/room", {}, format="json").json()
    api.post("/api/voice/room", {}, format="json")
    response = api.delete("/api/voice/room", {"roomUrl": theirs["roomUrl"]}, format="json")
    assert response.status_code == 404
    assert "room_url" in response.json()["fields"]


def test_leave_without_room_is_404(api):
    assert api.delete("/api/voice/room", {}, format="json").status_code == 404


@pytest.mark.parametrize("delay", [-1, 86401, "soon"])
def test_leave_rejects_bad_delay(api, delay):
    api.post("/api/voice/room", {}, format="json")
    response = api.delete("/api/voice/room", {"teardownDelay": delay}, format="json")
    assert response.status_code == 400
    assert "teardownDelay" in response.json()["fields"]


def test_expired_room_is_recreated(api, user):
    api.post("/api/voice/room", {}, format="json")
    VoiceRoom.objects.filter(user=user).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert api.post("/api/voice/room", {}, format="json").json()["reused"] is False
