"""What a hostile user or a careless operator does to a running server (issue 15), in one place:
nested and oversized bodies on every endpoint and on the websocket, bad SDPs, token reuse
across a teardown, a deactivated user, floods on the websocket, forged log lines, password
guessing. Each test failed before its fix. The live-call halves (a bogus SDP during a real
call, a bare token replacing the owner's peer) run against a real worker in test_bot_e2e.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from tests.livesrv import ROOT
from tests.samples import VALID_SDP
from tests.test_websocket import _active_session, _connect, _receive_until, _setup_user
from voiceproject.asgi import application
from voicesessions import sessions, teardown
from voicesessions.models import SessionEvent, SessionStatus, VoiceEventType, VoiceSession

pytestmark = pytest.mark.django_db(transaction=True)

NESTED = "[" * 1000 + "]" * 1000


def _offer(body: object, token: str | None, method: str = "post", client: Client | None = None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return getattr(client or Client(), method)("/api/voice/webrtc/offer", data, content_type="application/json",
                                               **headers, **extra)


def _assert_json_400(response, field: str | None = None, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) >= {"error", "detail"}
    if field:
        assert field in body.get("fields", {}), body
    return body


# --- 1 and 10b: nested and oversized bodies ---------------------------------------------------------

@pytest.fixture
def room(api):
    return api.post("/api/voice/room", {}, format="json").json()


@pytest.mark.parametrize("method, path", [("post", "/api/bot/join"), ("post", "/api/voice/room"),
                                          ("delete", "/api/voice/room")])
def test_nested_json_is_a_400_on_every_rest_endpoint(api, method, path):
    response = getattr(api, method)(path, NESTED, content_type="application/json")
    _assert_json_400(response)


@pytest.mark.parametrize("method", ["post", "patch"])
def test_nested_json_is_a_400_on_the_offer_endpoint(room, method):
    _assert_json_400(_offer(NESTED, room["token"], method), "body")


def test_moderately_nested_json_is_refused_before_it_reaches_a_serializer(api):
    deep = {"voiceParameters": json.loads("[" * 40 + "]" * 40)}
    body = _assert_json_400(api.post("/api/bot/join", deep, format="json"))
    assert "deep" in body["detail"]


@pytest.mark.parametrize("method, path", [("post", "/api/bot/join"), ("post", "/api/voice/room"),
                                          ("delete", "/api/voice/room"), ("post", "/api/voice/webrtc/offer")])
def test_a_10_mb_body_is_a_413_with_the_json_error_shape(api, room, method, path):
    big = json.dumps({"sdp": "x" * (10 * 1024 * 1024), "type": "offer"})
    response = getattr(api, method)(path, big, content_type="application/json",
                                    HTTP_AUTHORIZATION=f"Bearer {room['token']}" if "offer" in path else "")
    body = _assert_json_400(response, "body", status=413)
    assert body["error"] == "too_large"


async def test_nested_or_binary_websocket_frames_get_a_voice_error_and_the_socket_stays_open():
    user, token, room = await sync_to_async(_setup_user)("alice")
    ws, connected = await _connect(token)
    assert connected
    assert (await ws.receive_json_from(timeout=3))["type"] == "voice.connected"
    for frame in ({"text": NESTED}, {"bytes": b"\x00\x01binary"},
                  {"text": json.dumps({"type": "user-message", "content": "x" * 100_000})}):
        await ws.send_input({"type": "websocket.receive", **frame})
        error = await ws.receive_json_from(timeout=3)
        assert error["type"] == "voice.error" and error["payload"]["code"] in ("invalid_message", "too_large"), error
    # Still open: a normal message is still answered.
    await ws.send_json_to({"type": "nonsense"})
    assert (await ws.receive_json_from(timeout=3))["payload"]["field"] == "type"
    await ws.disconnect()


# --- 2: the offer is validated before it reaches the bot ----------------------------------------------

@pytest.mark.parametrize("sdp", ["v=0\r\n", "hello world", 5, VALID_SDP.replace("m=audio", "m=video")])
def test_a_bogus_sdp_is_refused_before_the_worker_is_asked(api, room, sdp, settings):
    settings.VOICE_OFFER_WAIT_SECONDS = 5  # would wait for a worker if the offer got that far
    api.post("/api/bot/join", {"voiceOnly": True}, format="json")
    response = _offer({"sdp": sdp, "type": "offer"}, room["token"])
    _assert_json_400(response, "sdp")


# --- 3: tokens die with their room ---------------------------------------------------------------------

def test_a_token_issued_before_a_teardown_stays_dead(api, room, settings):
    settings.VOICE_OFFER_WAIT_SECONDS = 0.1
    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")
    assert _offer({"sdp": VALID_SDP, "type": "offer"}, room["token"]).status_code == 409
    fresh = api.post("/api/voice/room", {}, format="json").json()
    assert fresh["roomName"] == room["roomName"] and fresh["reused"] is False
    assert api.post("/api/bot/join", {"voiceOnly": True}, format="json").status_code == 202
    old = _offer({"sdp": VALID_SDP, "type": "offer"}, room["token"])
    assert old.status_code == 401 and old.json()["error"] == "invalid_token", old.content
    assert "revoked" in old.json()["detail"]
    # The new token gets past authentication (no worker here, so 503 after the wait).
    assert _offer({"sdp": VALID_SDP, "type": "offer"}, fresh["token"]).status_code == 503


# --- 4: a deactivated user loses voice at once ----------------------------------------------------------

def test_a_deactivated_user_is_refused_and_their_sessions_end(api, user, room, settings):
    settings.VOICE_OFFER_WAIT_SECONDS = 0.1
    join = api.post("/api/bot/join", {"voiceOnly": True}, format="json").json()
    user.is_active = False
    user.save()
    response = _offer({"sdp": VALID_SDP, "type": "offer"}, room["token"])
    assert response.status_code == 401 and "inactive" in response.json()["detail"]
    session = VoiceSession.objects.get(pk=join["sessionId"])
    assert session.status == SessionStatus.ENDED and session.end_reason == "user_deactivated"


# --- 5: resume needs a paused session -------------------------------------------------------------------

def test_resume_without_a_bot_is_a_409_and_the_session_stays_connecting(api, room):
    join = api.post("/api/bot/join", {"voiceOnly": True}, format="json").json()
    response = api.post(f"/api/voice/sessions/{join['sessionId']}/resume")
    assert response.status_code == 409 and response.json()["error"] == "illegal_transition"
    assert VoiceSession.objects.get(pk=join["sessionId"]).status == SessionStatus.CONNECTING


# --- 6: the dashboard escapes what it echoes and sends a CSP ---------------------------------------------

def test_the_dashboard_does_not_reflect_markup(admin_client):
    attack = "<img src=x onerror=alert(document.domain)>"
    response = admin_client.get("/admin/dashboard/", {"period": attack})
    assert response.status_code == 400
    assert attack.encode() not in response.content
    assert not response["Content-Type"].startswith("text/html")
    response = admin_client.post("/admin/dashboard/", {"percentage": attack})
    assert response.status_code == 400 and attack.encode() not in response.content


def test_pages_send_a_content_security_policy(admin_client):
    for url in ("/admin/dashboard/", "/admin/", "/api/docs/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in \
            policy.split("script-src")[1].split(";")[0], (url, policy)
        assert response["X-Content-Type-Options"] == "nosniff"


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "voiceproject.settings", "VOICE_VAR_DIR": str(tmp_path),
           "SECRET_KEY": "a-production-key-" + "x7Qp" * 16, "DEBUG": "false", "VOICE_HTTPS": "true",
           "ALLOWED_HOSTS": "voice.example.com", "PUBLIC_BASE_URL": "https://voice.example.com",
           "CSRF_TRUSTED_ORIGINS": "https://voice.example.com"}
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


# --- 7: websocket floods -------------------------------------------------------------------------------

async def test_a_flood_of_typed_messages_is_refused_not_stored():
    user, token, room = await sync_to_async(_setup_user)("alice")
    await sync_to_async(_active_session)(user, room)
    ws, _ = await _connect(token)
    await ws.receive_json_from(timeout=3)
    for i in range(200):
        await ws.send_json_to({"type": "user-message", "content": f"message {i} " + "y" * 3000})
    # Messages are handled in order and each refused one is answered at once: once 199 refusals
    # are in, all 200 have been handled.
    codes = await _refusals(ws, 199)
    assert set(codes) <= {"rate_limited", "bot_busy"}, codes
    stored = await sync_to_async(SessionEvent.objects.filter(user=user, type=VoiceEventType.TRANSCRIPT).count)()
    assert stored == 1, stored  # the bot is busy with the first message until it answers
    await ws.disconnect()


async def test_a_flood_of_pause_and_resume_is_bounded():
    user, token, room = await sync_to_async(_setup_user)("alice")
    await sync_to_async(_active_session)(user, room)
    before = await sync_to_async(SessionEvent.objects.filter(user=user).count)()
    ws, _ = await _connect(token)
    await ws.receive_json_from(timeout=3)
    for i in range(1000):
        await ws.send_json_to({"type": "dailyCall.session.start" if i % 2 == 0 else "dailyCall.session.end"})
    # Before the limit, 780 of these became events; now all but a burst (and what the bucket
    # refills while the flood is handled) are refused.
    codes = await _refusals(ws, 900)
    assert set(codes) == {"rate_limited"}, codes
    after = await sync_to_async(SessionEvent.objects.filter(user=user).count)()
    assert after - before <= 100, after - before
    await ws.disconnect()


async def _refusals(ws, count: int) -> dict[str, int]:
    """Read until `count` voice.errors have arrived (other events are skipped); their codes, counted."""
    codes: dict[str, int] = {}
    while sum(codes.values()) < count:
        message = await ws.receive_json_from(timeout=10)
        if message["type"] == "voice.error":
            codes[message["payload"]["code"]] = codes.get(message["payload"]["code"], 0) + 1
    return codes


async def test_a_typed_message_is_refused_while_the_bot_answers_the_last_one():
    user, token, room = await sync_to_async(_setup_user)("alice")
    session = await sync_to_async(_active_session)(user, room)
    ws, _ = await _connect(token)
    await ws.receive_json_from(timeout=3)
    await ws.send_json_to({"type": "user-message", "content": "first"})
    assert (await _receive_until(ws, "voice.transcript"))["payload"]["text"] == "first"
    await ws.send_json_to({"type": "user-message", "content": "second"})
    busy = await _receive_until(ws, "voice.error")
    assert busy["payload"]["code"] == "bot_busy"
    # The bot answers: the next message goes through.
    await sync_to_async(_record)(session, VoiceEventType.TRANSCRIPT, {"role": "assistant", "text": "ok",
                                                                      "final": True})
    await ws.send_json_to({"type": "user-message", "content": "third"})
    third = await _receive_until(ws, "voice.transcript")
    while third["payload"]["role"] != "user":
        third = await _receive_until(ws, "voice.transcript")
    assert third["payload"]["text"] == "third"
    await ws.disconnect()


def _record(session, event_type, payload):
    from voicesessions.events import record_event
    return record_event(session, event_type, payload)


# --- 8: a join that never connects frees its slot --------------------------------------------------------

def test_a_claimed_session_that_never_connects_ends_and_says_why(api, room, settings):
    settings.VOICE_CONNECT_TIMEOUT = 30
    join = api.post("/api/bot/join", {"voiceOnly": True}, format="json").json()
    sessions.claim_for_worker(join["sessionId"], "w-slow")
    assert teardown.sweep_due()["sessions"] == 0  # inside the window
    done = teardown.sweep_due(timezone.now() + dt.timedelta(seconds=31))
    assert done["sessions"] == 1
    session = VoiceSession.objects.get(pk=join["sessionId"])
    assert session.status == SessionStatus.ENDED and session.end_reason == "connect_timeout"
    error = session.events.get(type=VoiceEventType.ERROR)
    assert error.payload["code"] == "connect_timeout" and "30" in error.payload["message"]


def test_a_connected_session_is_not_ended_by_the_connect_window(api, room, settings):
    settings.VOICE_CONNECT_TIMEOUT = 30
    join = api.post("/api/bot/join", {"voiceOnly": True}, format="json").json()
    sessions.claim_for_worker(join["sessionId"], "w-fast")
    sessions.mark_bot_connected(join["sessionId"], "w-fast")
    teardown.sweep_due(timezone.now() + dt.timedelta(seconds=31))
    assert VoiceSession.objects.get(pk=join["sessionId"]).status == SessionStatus.ACTIVE


# --- 9: restarting never undoes an admin's rollout -------------------------------------------------------

def test_seed_demo_leaves_an_admins_rollout_alone():
    from django.core.management import call_command

    from assistants.models import AssistantRecord, VoiceRollout

    call_command("seed_demo", stdout=io.StringIO())
    rollout = VoiceRollout.load()
    rollout.percentage, rollout.use_pipecat_voice = 0, False
    rollout.save()
    AssistantRecord.objects.filter(slug="pearl").update(system_prompt="Edited by an admin.")
    call_command("seed_demo", stdout=io.StringIO())
    rollout = VoiceRollout.load()
    assert (rollout.percentage, rollout.use_pipecat_voice) == (0, False)
    assert AssistantRecord.objects.get(slug="pearl").system_prompt == "Edited by an admin."


# --- 10: no forged log lines ---------------------------------------------------------------------------

def test_control_characters_in_a_path_cannot_forge_a_log_line(api):
    from django.conf import settings as django_settings

    from voiceproject.accesslog import AccessLogMiddleware
    from voiceproject.logformat import PlainFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter(django_settings.LOGGING["formatters"]["plain"]["format"]))
    loggers = [logging.getLogger("voiceproject.access"), logging.getLogger("voicesessions")]
    for logger in loggers:
        logger.addHandler(handler)
    forged = "\n2026-12-01 00:00:00,000 WARNING django.security FORGED-LINE"
    try:
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def noop(*_args):
            return {"type": "http.request"}

        scope = {"type": "http", "method": "GET", "path": "/api/voice/sessions/x" + forged, "client": ("1.2.3.4", 1)}
        asyncio.run(AccessLogMiddleware(app)(scope, noop, noop))
        logging.getLogger("voicesessions.test").warning("user said %s", "hi\r\nFAKE\x1b[31m")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines)
    assert "\\n2026-12-01" in lines[0] and "\\r\\nFAKE\\x1b" in lines[1]


# --- smaller findings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_password_guessing_locks_the_account_out(make_user, url):
    make_user("victim")
    client = Client()
    for _ in range(40):
        client.post(url, {"username": "victim", "password": "wrong"})
    response = client.post(url, {"username": "victim", "password": "pw-victim"})
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    # Another account from elsewhere is not locked.
    make_user("bystander", is_staff=True)
    other = Client(REMOTE_ADDR="10.9.9.9")
    assert other.post(url, {"username": "bystander", "password": "pw-bystander"}).status_code == 302


def test_a_throttled_user_can_still_leave_their_room(api, settings):
    settings.VOICE_THROTTLE_RATES = {"voice_room": "2/minute", "bot_join": "2/minute"}
    for _ in range(2):
        api.post("/api/voice/room", {}, format="json")
    assert api.post("/api/voice/room", {}, format="json").status_code == 429
    assert api.delete("/api/voice/room", {"teardownDelay": 0}, format="json").status_code == 200


async def test_websocket_origin_must_match_scheme_host_and_port():
    user, token, room = await sync_to_async(_setup_user)("alice")

    async def attempt(origin: bytes, host: bytes = b"127.0.0.1:8000") -> bool:
        communicator = WebsocketCommunicator(application, "/ws/voice/", headers=[
            (b"origin", origin), (b"host", host), (b"authorization", f"Token {token}".encode())])
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert await attempt(b"http://127.0.0.1:8000") is True
    assert await attempt(b"http://127.0.0.1:9999") is False
    assert await attempt(b"https://127.0.0.1:8000") is False
    assert await attempt(b"http://localhost:8000", b"localhost:8000") is True


def test_the_offer_tells_the_worker_whether_the_owner_sent_it(api, user, room, settings):
    """The relay marks an offer as the owner's only when the signed-in user is the token's user;
    the worker refuses a bare token's offer that would replace a live connection (test_bot_e2e)."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from voicesessions.api.webrtc import _offer_is_from_owner

    request = RequestFactory().post("/api/voice/webrtc/offer")
    request.user = user
    assert _offer_is_from_owner(request, str(user.pk)) is True
    assert _offer_is_from_owner(request, str(user.pk + 1)) is False
    request.user = AnonymousUser()
    assert _offer_is_from_owner(request, str(user.pk)) is False


def test_each_room_counts_its_own_generations(api, other_api, room):
    """A teardown revokes one user's tokens, not another's."""
    from voicesessions.models import VoiceRoom

    api.delete("/api/voice/room", {"teardownDelay": 0}, format="json")
    api.post("/api/voice/room", {}, format="json")
    theirs = other_api.post("/api/voice/room", {}, format="json").json()
    assert VoiceRoom.objects.get(name=room["roomName"]).generation == 2
    assert VoiceRoom.objects.get(name=theirs["roomName"]).generation == 1
