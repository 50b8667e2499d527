"""/ws/voice/: authentication, per-user isolation, user-message, DailyCall pause/resume, replay."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from voiceproject.asgi import application
from voicesessions import rooms, sessions
from voicesessions.models import SessionStatus, VoiceSession

pytestmark = pytest.mark.django_db(transaction=True)


def _setup_user(name: str) -> tuple:
    user = get_user_model().objects.create_user(username=name, password="pw")
    token = Token.objects.create(user=user).key
    room = rooms.get_or_create_room(user).room
    return user, token, room


def _active_session(user, room) -> VoiceSession:
    session = sessions.join_bot(user, room, assistant=None, params={"voiceOnly": True}).session
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_joined")
    return session


async def _connect(token: str | None = None, path: str = "/ws/voice/", origin: bytes = b"http://127.0.0.1:8000"):
    headers = [(b"origin", origin)]
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


async def _receive_until(communicator, event_type: str, limit: int = 20) -> dict:
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=3)
        if message["type"] == event_type:
            return message
    raise AssertionError(f"no {event_type} received")


async def test_anonymous_is_refused():
    communicator, connected = await _connect(None)
    assert connected is False


async def test_bad_origin_is_refused():
    user, token, room = await sync_to_async(_setup_user)("alice")
    communicator, connected = await _connect(token, origin=b"http://evil.example.com")
    assert connected is False


async def test_session_cookie_auth_works():
    from django.test import Client

    user, token, room = await sync_to_async(_setup_user)("alice")
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, "/ws/voice/",
                                         headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=3)
    assert hello["type"] == "voice.connected" and hello["userId"] == str(user.pk)
    await communicator.disconnect()


async def test_each_user_receives_only_their_own_events():
    alice, alice_token, alice_room = await sync_to_async(_setup_user)("alice")
    bob, bob_token, bob_room = await sync_to_async(_setup_user)("bob")
    ws_alice, ok_a = await _connect(alice_token)
    ws_bob, ok_b = await _connect(bob_token)
    assert ok_a and ok_b
    await ws_alice.receive_json_from(timeout=3)  # voice.connected
    await ws_bob.receive_json_from(timeout=3)

    session = await sync_to_async(sessions.join_bot)(alice, alice_room, assistant=None, params={"voiceOnly": True})
    start = await ws_alice.receive_json_from(timeout=3)
    assert start["type"] == "voice.session.start"
    assert start["sessionId"] == str(session.session.pk) and start["userId"] == str(alice.pk)
    assert start["roomUrl"] == alice_room.url and start["payload"]["status"] == "connecting"
    assert await ws_bob.receive_nothing(timeout=0.5)

    bob_session = await sync_to_async(sessions.join_bot)(bob, bob_room, assistant=None, params={})
    got = await ws_bob.receive_json_from(timeout=3)
    assert got["sessionId"] == str(bob_session.session.pk)
    assert await ws_alice.receive_nothing(timeout=0.5)
    await ws_alice.disconnect()
    await ws_bob.disconnect()


async def test_user_message_reaches_log_and_the_bots_worker():
    """The text goes into the event log and to the control endpoint of the worker holding the bot."""
    from aiohttp import web

    from voicesessions import workers as registry
    from voicesessions.workers import SECRET_HEADER

    user, token, room = await sync_to_async(_setup_user)("alice")
    session = await sync_to_async(_active_session)(user, room)
    received: list[tuple[str, dict, str]] = []

    async def control(request):  # stands in for a bot worker's control endpoint
        received.append((request.match_info["sid"], await request.json(), request.headers.get(SECRET_HEADER)))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/sessions/{sid}/control", control)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    await sync_to_async(registry.register)("w-test", f"http://127.0.0.1:{port}", 2)
    await sync_to_async(VoiceSession.objects.filter(pk=session.pk).update)(bot_worker_id="w-test")

    ws, ok = await _connect(token)
    await ws.receive_json_from(timeout=3)
    await ws.send_json_to({"type": "user-message", "content": "  what's on my list?  "})
    transcript = await _receive_until(ws, "voice.transcript")
    assert transcript["payload"] == {"role": "user", "text": "what's on my list?", "final": True, "source": "text"}
    for _ in range(50):
        if received:
            break
        await asyncio.sleep(0.05)
    assert received == [(str(session.pk), {"action": "user_message", "content": "what's on my list?"},
                         registry.control_secret("w-test"))]
    logged = await sync_to_async(lambda: list(session.events.values_list("type", flat=True)))()
    assert "voice.transcript" in logged
    await ws.disconnect()
    await runner.cleanup()


async def test_bad_client_messages_get_a_voice_error_and_keep_the_socket():
    user, token, room = await sync_to_async(_setup_user)("alice")
    ws, ok = await _connect(token)
    await ws.receive_json_from(timeout=3)
    for bad, field in [({"type": "dance"}, "type"), ({"type": "user-message", "content": ""}, "content"),
                       ({"type": "user-message", "content": "x" * 5000}, "content"),
                       ({"type": "user-message", "content": "hi"}, "sessionId"),
                       ({"type": "user-message", "content": "hi", "sessionId": "nope"}, "sessionId")]:
        await ws.send_json_to(bad)
        error = await ws.receive_json_from(timeout=3)
        assert error["type"] == "voice.error" and error["payload"]["field"] == field, (bad, error)
    await ws.send_to(text_data="{not json")
    error = await ws.receive_json_from(timeout=3)
    assert error["type"] == "voice.error" and error["payload"]["field"] == "frame"
    await ws.disconnect()


async def test_daily_call_pauses_and_resumes_the_voice_session():
    user, token, room = await sync_to_async(_setup_user)("alice")
    session = await sync_to_async(_active_session)(user, room)
    ws, ok = await _connect(token)
    hello = await ws.receive_json_from(timeout=3)
    assert hello["sessions"] == [{"sessionId": str(session.pk), "status": "active", "roomUrl": room.url}]

    await ws.send_json_to({"type": "dailyCall.session.start"})
    status = await _receive_until(ws, "voice.session.status")
    assert status["payload"]["status"] == "paused" and status["payload"]["reason"] == "dailyCall"
    await sync_to_async(session.refresh_from_db)()
    assert session.status == SessionStatus.PAUSED and session.pause_reason == "dailyCall"

    await ws.send_json_to({"type": "dailyCall.session.end"})
    status = await _receive_until(ws, "voice.session.status")
    assert status["payload"]["status"] == "active"
    await sync_to_async(session.refresh_from_db)()
    assert session.status == SessionStatus.ACTIVE
    await ws.disconnect()


async def test_daily_call_end_does_not_resume_a_user_pause():
    user, token, room = await sync_to_async(_setup_user)("alice")
    session = await sync_to_async(_active_session)(user, room)
    await sync_to_async(sessions.pause)(session, by="user")
    ws, ok = await _connect(token)
    await ws.receive_json_from(timeout=3)
    await ws.send_json_to({"type": "dailyCall.session.end"})
    assert await ws.receive_nothing(timeout=0.5)
    await sync_to_async(session.refresh_from_db)()
    assert session.status == SessionStatus.PAUSED


async def test_reconnect_replays_missed_events():
    user, token, room = await sync_to_async(_setup_user)("alice")
    ws, ok = await _connect(token)
    await ws.receive_json_from(timeout=3)
    result = await sync_to_async(sessions.join_bot)(user, room, assistant=None, params={})
    first = await ws.receive_json_from(timeout=3)
    await ws.disconnect()
    # while disconnected, the session goes active
    await sync_to_async(sessions.change_status)(result.session, SessionStatus.ACTIVE, reason="bot_joined")
    ws2, ok = await _connect(token, path=f"/ws/voice/?after={first['id']}")
    await ws2.receive_json_from(timeout=3)
    missed = await ws2.receive_json_from(timeout=3)
    assert missed["type"] == "voice.session.status" and missed["payload"]["status"] == "active"
    assert missed["id"] > first["id"]
    await ws2.disconnect()


async def test_scripts_without_origin_connect_with_a_token_but_not_anonymously():
    user, token, room = await sync_to_async(_setup_user)("alice")
    for auth, expected in [([(b"authorization", f"Token {token}".encode())], True), ([], False)]:
        communicator = WebsocketCommunicator(application, "/ws/voice/", headers=auth)
        connected, _ = await communicator.connect()
        assert connected is expected
        if connected:
            await communicator.disconnect()
