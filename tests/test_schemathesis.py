"""Fuzz the API against its own OpenAPI schema, the one drf-spectacular serves at /api/schema/.

Schemathesis loads the schema from the Django WSGI app in-process and sends every
generated request to that same app, so requests hit pytest-django's test database.
Each API operation is one test; each response must:
- not be a 5xx (not_a_server_error);
- have a documented status code (status_code_conformance);
- have a documented Content-Type (content_type_conformance);
- have a body that matches the documented schema, errors included
  (response_schema_conformance), and documented headers (response_headers_conformance);
- be a 401 when the same request is sent without credentials (ignored_auth);
- be a 405 with a correct Allow header for methods the schema does not list
  (unsupported_method, allow_header_conformance);
- be a 4xx when a JSON body violates the schema (negative_data_rejection).

Bounded for CI: at most 30 generated cases per operation (plus schemathesis's
deterministic coverage cases), derandomized so every run sends the same requests.
"""
from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (allow_header_conformance, content_type_conformance, ignored_auth,
                                               negative_data_rejection, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance,
                                               unsupported_method)

from voicesessions import rooms, sessions
from voicesessions.models import SessionStatus
from voiceproject.wsgi import application

# The API parses JSON only (settings.REST_FRAMEWORK), so every body schemathesis sends is
# JSON and an invalid one must be refused.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, ignored_auth, unsupported_method, allow_header_conformance,
          negative_data_rejection]

# /api/voice/webrtc/offer is not fuzzed: it is a plain async Django view (authenticated by a
# room token, not DRF), so it is not in the schema at all, and it would wait up to
# VOICE_OFFER_WAIT_SECONDS for a bot worker. tests/test_webrtc_signalling.py covers it.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# No stateful phase: each operation is fuzzed on its own, against the state the fixture makes.
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])

# Values that exist for this test's user, set by the `fuzz_state` fixture. Random slugs, UUIDs and
# URLs only ever reach the 400/403/404 branches, so positive cases sometimes use these instead.
KNOWN: dict[str, list[str]] = {}


@schema.hook
def flatmap_case(context, case):
    """Positive cases only: a negative case must stay invalid for negative_data_rejection."""
    if case.meta is None or case.meta.generation.mode != schemathesis.GenerationMode.POSITIVE:
        return st.just(case)
    slots = [(container, key) for container in ("path_parameters", "query", "body")
             if isinstance(getattr(case, container, None), dict)
             for key in getattr(case, container) if KNOWN.get(key)]
    if not slots:
        return st.just(case)

    def substitute(picks: tuple[str | None, ...]):
        for (container, key), pick in zip(slots, picks):
            if pick is not None:
                getattr(case, container)[key] = pick
        return case

    return st.tuples(*(st.sampled_from([None, *KNOWN[key]]) for _, key in slots)).map(substitute)


@pytest.fixture
def fuzz_state(db, settings, user, assistant):
    """The user's token, room and sessions (a live one and an ended one); yields the auth header."""
    # Fuzzing sends hundreds of requests a minute: keep the throttles of the room and join
    # endpoints out of the way (their rates are read from this setting on each request).
    settings.VOICE_THROTTLE_RATES = {"voice_room": "100000/min", "bot_join": "100000/min"}
    # As Django's test client does: otherwise the WSGI handler "closes" the connection that holds
    # the test's transaction after each request (a no-op on in-memory SQLite, not on PostgreSQL).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    token = Token.objects.create(user=user)
    room = rooms.get_or_create_room(user).room  # so /api/bot/join can succeed
    # An ended session without an assistant, then a live one with it: nulls and values both.
    ended = sessions.join_bot(user, room, assistant=None, params={}).session
    sessions.change_status(ended, SessionStatus.ENDED, reason="test")
    live = sessions.join_bot(user, room, assistant=assistant, params={}).session
    KNOWN.update({"session_id": [str(live.pk), str(ended.pk)], "assistant": [assistant.slug],
                  "sessionUserId": [str(user.pk)], "room_url": [room.url], "roomUrl": [room.url]})
    try:
        yield {"Authorization": f"Token {token.key}"}
    finally:
        KNOWN.clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, fuzz_state):
    assert case.media_type in (None, "application/json")  # the schema documents JSON bodies only
    case.call_and_validate(headers=fuzz_state, checks=CHECKS)
