"""Per-user rate limits on room and join: 429 with Retry-After and the JSON error shape."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def tight_limits(settings) -> None:
    settings.VOICE_THROTTLE_RATES = {"voice_room": "3/minute", "bot_join": "2/minute"}


def test_room_requests_past_the_limit_get_429_with_retry_after(api, other_api, tight_limits):
    for _ in range(3):
        assert api.post("/api/voice/room", {}, format="json").status_code == 200
    refused = api.post("/api/voice/room", {}, format="json")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["error"] == "throttled"
    assert "seconds" in refused.json()["detail"]
    # The limit is per user: another user is not held back by the first one's requests.
    assert other_api.post("/api/voice/room", {}, format="json").status_code == 200


def test_join_has_its_own_limit(api, tight_limits):
    assert api.post("/api/voice/room", {}, format="json").status_code == 200
    statuses = [api.post("/api/bot/join", {}, format="json").status_code for _ in range(3)]
    assert statuses[:2] == [202, 200]  # queued, then the same live session reused
    assert statuses[2] == 429
    # Reading sessions is not limited.
    assert api.get("/api/voice/sessions").status_code == 200


def test_default_limits_let_a_user_reload_the_page_a_few_times(api):
    for _ in range(10):  # each page load: a room request and a join
        assert api.post("/api/voice/room", {}, format="json").status_code == 200
        assert api.post("/api/bot/join", {}, format="json").status_code in (200, 202)
