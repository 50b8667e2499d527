"""Whatever JSON a client sends, the API answers 2xx or 4xx with a JSON body: never a 500."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

FIELDS = ["room_url", "personalityId", "persona", "tenantId", "voice", "voiceParameters", "voiceOnly",
          "sessionPersistence", "sessionUserId", "assistant", "roomUrl", "teardownDelay", "speed"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=3),
    max_leaves=8)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6) | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, method_path=st.sampled_from([("post", "/api/voice/room"), ("delete", "/api/voice/room"),
                                                 ("post", "/api/bot/join")]))
def test_no_input_makes_a_500(api, assistant, body, method_path):
    method, path = method_path
    api.post("/api/voice/room", {}, format="json")
    response = getattr(api, method)(path, body, format="json")
    assert response.status_code < 500, (body, response.content)
    if response.status_code >= 400:
        payload = response.json()
        assert payload["error"] and payload["detail"]


@pytest.mark.parametrize("raw", ['{"sessionPersistence": Infinity}', '{"voiceParameters": {"speed": NaN}}',
                                 '{"voiceOnly": true', "\xff\xfe", '"just a string"', "null", "1e999"])
def test_non_json_and_non_finite_numbers_are_400(api, raw):
    api.post("/api/voice/room", {}, format="json")
    response = api.generic("POST", "/api/bot/join", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] in {"parse_error", "invalid"}


def test_form_bodies_are_refused_with_415(api):
    """A JSON API: a form body is not read by other rules, it is refused and says so."""
    response = api.post("/api/bot/join", {"voiceOnly": ""})  # APIClient's default: multipart
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
