"""POST/PATCH /api/voice/webrtc/offer: room-token auth and input checks (the relay itself is
covered end to end in test_bot_e2e)."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.samples import VALID_SDP

pytestmark = pytest.mark.django_db(transaction=True)
OFFER = {"sdp": VALID_SDP, "type": "offer"}


@pytest.fixture
def room(api):
    return api.post("/api/voice/room", {}, format="json").json()


def _post(body, token=None, method="post"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return getattr(Client(), method)("/api/voice/webrtc/offer", body, content_type="application/json", **headers)


def test_missing_and_forged_tokens_are_401(room):
    missing = _post(OFFER)
    assert missing.status_code == 401 and "Authorization" in missing.json()["fields"]
    forged = _post(OFFER, room["token"][:-3] + "abc")
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_token"


def test_no_session_yet_is_409(room):
    response = _post(OFFER, room["token"])
    assert response.status_code == 409 and response.json()["error"] == "no_session"


@pytest.mark.parametrize("body, field", [({"type": "offer"}, "sdp"), ({"sdp": "x", "type": "answer"}, "type"),
                                         ({**OFFER, "extra": 1}, "extra")])
def test_bad_offers_name_the_field(room, body, field):
    response = _post(body, room["token"])
    assert response.status_code == 400 and field in response.json()["fields"]


def test_torn_down_room_is_409(api, room):
    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")
    response = _post(OFFER, room["token"])
    assert response.status_code == 409 and response.json()["error"] == "room_not_ready"


def test_no_worker_claims_in_time_is_503(api, room, settings):
    settings.VOICE_OFFER_WAIT_SECONDS = 0.2
    api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    response = _post(OFFER, room["token"])
    assert response.status_code == 503 and response["Retry-After"] == "2"


def test_other_methods_are_405(room):
    assert Client().get("/api/voice/webrtc/offer").status_code == 405
