"""The room API end to end with VOICE_PROVIDER=daily, against the checking fake of Daily's REST API."""
from __future__ import annotations

import pytest

from tests.fakes.daily_api import FakeDailyAPI
from voicesessions.models import RoomState, VoiceRoom

pytestmark = pytest.mark.django_db


@pytest.fixture
def daily(settings):
    with FakeDailyAPI(api_key="test-key") as fake:
        settings.VOICE_PROVIDER = "daily"
        settings.DAILY_API_KEY = "test-key"
        settings.DAILY_API_URL = fake.url
        settings.DAILY_MAX_RETRIES = 2
        yield fake


def test_room_is_created_private_with_the_seed_properties(api, user, daily):
    body = api.post("/api/voice/room", {}, format="json").json()
    assert body["provider"] == "daily" and body["reused"] is False
    assert body["roomUrl"] == f"https://{daily.domain}.daily.co/voice-{user.pk}"
    created = daily.requests_to("POST", "/v1/rooms")[0].json
    assert created["name"] == f"voice-{user.pk}" and created["privacy"] == "private"
    props = created["properties"]
    assert props["max_participants"] == 2
    for flag in ("enable_knocking", "enable_prejoin_ui", "enable_screenshare", "enable_chat"):
        assert props[flag] is False
    assert "enable_recording" not in props  # recording off
    token = daily.decode_token(body["token"])
    assert token["r"] == f"voice-{user.pk}" and token["ud"] == str(user.pk) and token.get("o") is not True


def test_second_call_reuses_after_checking_daily(api, daily):
    api.post("/api/voice/room", {}, format="json")
    second = api.post("/api/voice/room", {}, format="json").json()
    assert second["reused"] is True
    assert len(daily.requests_to("POST", "/v1/rooms")) == 1
    assert len(daily.requests_to("POST", "/v1/meeting-tokens")) == 2


def test_room_deleted_at_daily_is_recreated(api, user, daily):
    api.post("/api/voice/room", {}, format="json")
    daily.rooms.clear()  # gone at Daily (expired, deleted in the dashboard)
    assert api.post("/api/voice/room", {}, format="json").json()["reused"] is False
    assert len(daily.requests_to("POST", "/v1/rooms")) == 2


def test_teardown_deletes_the_room_at_daily(api, user, daily):
    api.post("/api/voice/room", {}, format="json")
    api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")
    assert daily.requests_to("DELETE", f"/v1/rooms/voice-{user.pk}")
    assert f"voice-{user.pk}" not in daily.rooms
    assert VoiceRoom.objects.get(user=user).state == RoomState.DELETED


def test_daily_rate_limit_becomes_429_with_retry_after(api, daily):
    daily.fail_next(10, 429, retry_after="0")
    response = api.post("/api/voice/room", {}, format="json")
    assert response.status_code == 429
    assert response.json()["error"] == "provider_rate_limited"
    assert "Retry-After" in response.headers
    assert not VoiceRoom.objects.exists()  # nothing half-made


def test_daily_outage_is_503_not_500(api, daily):
    daily.fail_next(10, 500)
    response = api.post("/api/voice/room", {}, format="json")
    assert response.status_code == 503 and response.json()["error"] == "provider_unavailable"


def test_wrong_api_key_is_502_and_key_not_leaked(api, daily, settings):
    settings.DAILY_API_KEY = "wrong-secret-key"
    response = api.post("/api/voice/room", {}, format="json")
    assert response.status_code == 502 and response.json()["error"] == "provider_auth"
    assert "wrong-secret-key" not in response.content.decode()


def test_failed_delete_is_retried_by_the_next_sweep(api, user, daily):
    from django.utils import timezone

    from voicesessions.teardown import sweep_due

    api.post("/api/voice/room", {}, format="json")
    api.delete("/api/voice/room", {"teardownDelay": 1}, format="json")
    daily.fail_next(3, 500)  # one sweep's worth: the first try and DAILY_MAX_RETRIES=2 retries
    later = timezone.now() + timezone.timedelta(seconds=2)
    assert sweep_due(later)["rooms"] == 0
    assert VoiceRoom.objects.get(user=user).state == RoomState.LIVE
    assert sweep_due(later)["rooms"] == 1
    assert f"voice-{user.pk}" not in daily.rooms
