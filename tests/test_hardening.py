"""Hardening: no credential ever reaches a log, and no user ever sees another user's session.

1. A real Daphne server and a real bot worker run with LOG_LEVEL=DEBUG while a user goes
   through the whole flow (sign-in, token auth, room, join, websocket, WebRTC offer, a typed
   message with a tool call, bad and expired tokens); every secret of that flow is then looked
   for, plain and URL-encoded, in everything both processes printed.
2. Two users with active sessions at the same time get interleaved events, two websockets
   each (one joining late with ?after=0), and poke at each other's sessions over REST; every
   message each socket gets must be theirs, and they must get all of theirs, in order.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.test import override_settings
from django.utils.crypto import salted_hmac
from rest_framework.test import APIClient

from tests.botharness import BOT_ENV, active_session, is_final_transcript, start_worker, stop_worker
from tests.livesrv import LiveServer, start_server
from tests.waiting import await_until, wait_until
from tests.test_live_server import _browser_login
from tests.test_websocket import _connect, _setup_user
from voicesessions import sessions
from voicesessions.events import record_event
from voicesessions.models import SessionEvent, SessionStatus, VoiceEventType, VoiceSession
from voicesessions.tokens import SALT as ROOM_TOKEN_SALT
from voicesessions.tokens import issue_room_token

WORKER_ID = "hardening-worker"


# --- 1. tokens are never logged -----------------------------------------------------------

def _encodings(secret: str) -> set[str]:
    """The forms a secret could take in a log line: as is and URL-encoded (path, query, form)."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def _leaks(logs: dict[str, str], secrets_by_name: dict[str, str]) -> list[str]:
    """Each (secret, log file) pair where some form of the secret occurs, with the offending line."""
    found = []
    for name, secret in secrets_by_name.items():
        for form in _encodings(secret):
            for log_name, text in logs.items():
                if form in text:
                    line = next(line for line in text.splitlines() if form in line)
                    found.append(f"{name} in {log_name}: {line[:300]}")
    return found


def _room_token_parts(token: str) -> dict[str, str]:
    """A signed room token and its signature alone (payload:timestamp:signature): a log that
    cut the token short would still give the signature away."""
    return {"": token, " signature": token.rsplit(":", 1)[-1]}


def test_leak_detector_sees_plain_and_url_encoded_secrets() -> None:
    """The check below would catch a token however a log line spells it."""
    token = "eyJyIjoi:1vPq/x+y=:sig_NAT-ure"
    for line in (f'"GET /api/voice/room?token={quote(token, safe="")}" 401', f"token={quote_plus(token)}",
                 f"Authorization: Bearer {token}"):
        assert _leaks({"server.log": line}, {"room token": token}), line
    assert not _leaks({"server.log": '"GET /api/voice/room" 200'}, {"room token": token})


EXPECTED_ACCESS = ("WSCONNECT /ws/voice/", "POST /api/voice/webrtc/offer", "POST /api/bot/join", "WSREJECT /ws/voice/")


@pytest.mark.server
@pytest.mark.timeout(120)
def test_tokens_are_never_logged(tmp_path: Path) -> None:
    """Run the whole flow with DEBUG logging, then grep both processes' output for every secret."""
    secret_key = secrets.token_urlsafe(50)  # distinctive, so any occurrence is a real leak
    server = start_server(tmp_path, {**BOT_ENV, "LOG_LEVEL": "DEBUG", "SECRET_KEY": secret_key,
                                     # unbuffered: the access log goes to stdout, a file here
                                     "PYTHONUNBUFFERED": "1"})
    worker = None
    found: dict[str, str] = {"SECRET_KEY": secret_key}
    try:
        worker = start_worker(server, "--pool-size", "1", "--worker-id", WORKER_ID)
        worker.log.seek(0)
        control_url = re.search(r"listening on (http://\S+)", worker.log.read()).group(1)
        session_id = asyncio.run(_whole_flow(server, control_url, secret_key, found))
        # Access lines are written a moment after the client has its answer: wait for the last ones.
        wait_until(lambda: all(line in server.log_path.read_text(errors="replace") for line in EXPECTED_ACCESS)
                   and f"session={session_id}" in server.log_path.read_text(errors="replace"),
                   15, "the flow's access lines")
    finally:
        if worker is not None:
            stop_worker(worker)
        server.stop()  # both stopped: every line they wrote is in the files now

    logs = {path.name: path.read_text(errors="replace") for path in sorted(tmp_path.glob("*.log"))}
    assert server.log_path.name in logs and any(name.startswith("worker-") for name in logs)
    # The flow really was logged, so finding nothing below means something.
    daphne_log, worker_log = logs[server.log_path.name], next(t for n, t in logs.items() if n.startswith("worker-"))
    for expected in (*EXPECTED_ACCESS, f"session={session_id}"):
        assert expected in daphne_log, expected
    assert f"session={session_id}" in worker_log and "[BotJoin]" in worker_log
    assert len(found) >= 10, sorted(found)
    assert not _leaks(logs, found), "\n".join(_leaks(logs, found))


async def _whole_flow(server: LiveServer, control_url: str, secret_key: str, found: dict[str, str]) -> str:
    """What a user (browser and script) does, good and bad; fills `found` with every secret seen."""
    url = server.url
    # A browser: login form, session cookie + CSRF, its room, its websocket (cookie auth).
    browser = await asyncio.to_thread(_browser_login, url)
    found["sessionid cookie"] = browser.cookies["sessionid"]
    found["csrftoken cookie"] = browser.cookies["csrftoken"]
    room = (await asyncio.to_thread(browser.post, "/api/voice/room", json={"assistant": "pearl"})).json()
    for part, value in _room_token_parts(room["token"]).items():
        found[f"browser room token{part}"] = value
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    ws_url = url.replace("http://", "ws://") + "/ws/voice/"
    browser_ws = await websockets.connect(ws_url + "?after=0", additional_headers={"Cookie": cookie, "Origin": url})
    assert json.loads(await asyncio.wait_for(browser_ws.recv(), 5))["type"] == "voice.connected"

    # A script with a DRF token: room, join, websocket (Authorization header, never the query
    # string) and a WebRTC peer that signals with the room token; the session goes active.
    client, peer, session_id = await active_session(server)
    found["DRF token key"] = client.token_header[1].split()[1]
    again = await asyncio.to_thread(client.http.post, "/api/voice/room", json={"assistant": "pearl"})
    for part, value in _room_token_parts(again.json()["token"]).items():
        found[f"script room token{part}"] = value

    # A typed message with a tool call: the bot's LLM, tool and TTS paths log too.
    await client.ws.send(json.dumps({"type": "user-message",
                                     "content": "Take a note called hardening saying keep it secret"}))
    await client.wait_for(lambda e: e["type"] == "voice.tool.result", 20, "tool result")
    await client.wait_for(is_final_transcript("assistant"), 20, "assistant answer")

    # The worker's control secret: derived from SECRET_KEY; proven right by the worker itself.
    control = salted_hmac("voicebot.control", WORKER_ID, secret=secret_key).hexdigest()
    found["worker control secret"] = control
    async with httpx.AsyncClient(timeout=5) as http:
        probe = f"{control_url}/sessions/no-such-session/control"  # no side effects on the bot
        assert (await http.post(probe, json={})).status_code == 403
        assert (await http.post(probe, json={}, headers={"X-Voice-Worker-Secret": control})).status_code == 404

        # Error paths, which log warnings: an expired (validly signed) and a forged room token,
        # a wrong DRF token over HTTP and over the websocket, a bad offer with a good token.
        claims = signing.loads(room["token"], key=secret_key, salt=ROOM_TOKEN_SALT)
        with override_settings(SECRET_KEY=secret_key):
            expired = issue_room_token(claims["r"], user_id=claims["u"], user_name=claims["n"],
                                       expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
        forged = room["token"][:-6] + ("abcdef" if not room["token"].endswith("abcdef") else "ghijkl")
        wrong_key = secrets.token_hex(20)
        found.update({"expired room token": expired, "forged room token": forged, "wrong DRF token": wrong_key})
        offer = {"sdp": "v=0\r\n", "type": "offer"}
        for token, detail in ((expired, "expired"), (forged, "signature")):
            refused = await http.post(f"{url}/api/voice/webrtc/offer", json=offer,
                                      headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 401 and detail in refused.text, refused.text
        bad_offer = await http.post(f"{url}/api/voice/webrtc/offer", json={"type": "answer"},
                                    headers={"Authorization": f"Bearer {room['token']}"})
        assert bad_offer.status_code == 400
        unauthorized = await http.get(f"{url}/api/voice/sessions", headers={"Authorization": f"Token {wrong_key}"})
        assert unauthorized.status_code == 401
    with pytest.raises(websockets.InvalidHandshake):
        await websockets.connect(ws_url, additional_headers={"Authorization": f"Token {wrong_key}"})

    # Leave: the bot goes, the room is torn down, the browser signs out.
    await peer.close()
    left = await asyncio.to_thread(client.http.request, "DELETE", "/api/voice/room", json={"teardownDelay": 0})
    assert left.status_code == 200
    await client.close()
    await browser_ws.close()
    await asyncio.to_thread(browser.post, "/accounts/logout/")
    browser.close()
    return session_id


# --- 2. a session's events never reach another user ----------------------------------------

@dataclass
class Party:
    """One user: their room, their active session, REST client and websockets."""

    name: str
    user: Any
    token: str
    room: Any
    api: APIClient
    session: VoiceSession | None = None
    sockets: dict[str, WebsocketCommunicator] = field(default_factory=dict)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str) -> "Party":
        user, token, room = _setup_user(name)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")  # DRF token auth, like the scripts
        return cls(name, user, token, room, api)

    async def open(self, label: str, path: str = "/ws/voice/") -> dict[str, Any]:
        """Connect one more websocket; return its voice.connected greeting."""
        communicator, connected = await _connect(self.token, path=path)
        assert connected
        hello = await communicator.receive_json_from(timeout=3)
        assert hello["type"] == "voice.connected" and hello["userId"] == str(self.user.pk)
        self.sockets[label] = communicator
        self.received[label] = []
        return hello


def _record(party: Party, event_type: str, payload: dict[str, Any]) -> None:
    record_event(party.session, event_type, payload)


def _turn(party: Party, i: int) -> None:
    """One turn of conversation with a tool call: what a bot worker records."""
    _record(party, VoiceEventType.TRANSCRIPT, {"role": "user", "text": f"{party.name} asks #{i}", "final": True})
    _record(party, VoiceEventType.TOOL_CALL, {"name": "create_note", "arguments": {"title": f"{party.name}-{i}"}})
    _record(party, VoiceEventType.TOOL_RESULT, {"name": "create_note", "result": {"ok": True, "id": i}})
    _record(party, VoiceEventType.TRANSCRIPT,
            {"role": "assistant", "text": f"{party.name} answered #{i}", "final": True})


def _events_of(party: Party) -> list[dict[str, Any]]:
    return [e.as_message() for e in SessionEvent.objects.filter(user=party.user).order_by("id")]


def _status_and_count(session: VoiceSession) -> tuple[str, int]:
    session.refresh_from_db()
    return session.status, session.events.count()


async def _drain(communicator: WebsocketCommunicator, into: list[dict[str, Any]], want: int, timeout: float) -> None:
    """Receive until `want` events arrived (or time is up), then make sure nothing else follows.

    Never waits on receive_json_from with nothing queued: its timeout would cancel the consumer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await communicator.receive_nothing(timeout=0.05, interval=0.01):
            into.append(await communicator.receive_json_from(timeout=1))
        elif len([m for m in into if "id" in m]) >= want:
            break
    while not await communicator.receive_nothing(timeout=0.3, interval=0.01):  # extras fail below
        into.append(await communicator.receive_json_from(timeout=1))


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("delivery", ["relay", "layer"])
async def test_interleaved_sessions_never_reach_another_user(delivery: str, settings: Any) -> None:
    """Both delivery paths (table relay; channel layer with its database catch-up loop)."""
    settings.VOICE_EVENT_DELIVERY = delivery
    settings.VOICE_WS_REFRESH_SECONDS = 0.2  # layer mode: the catch-up loop runs during the test
    alice = await sync_to_async(Party.create)("alice")
    bob = await sync_to_async(Party.create)("bob")
    parties = (alice, bob)
    for party in parties:
        assert (await party.open("early"))["sessions"] == []

    # Both sessions start and go active, interleaved.
    for party in parties:
        party.session = (await sync_to_async(sessions.join_bot)(party.user, party.room, assistant=None,
                                                                 params={"voiceOnly": True})).session
    for party in parties:
        await sync_to_async(sessions.change_status)(party.session, SessionStatus.ACTIVE, reason="bot_joined")
    for i in range(3):
        for party in parties:
            await sync_to_async(_turn)(party, i)

    # Status changes over REST, interleaved, and each user tries the other's session: always 404.
    async def rest(party: Party, method: str, path: str) -> Any:
        return await sync_to_async(getattr(party.api, method))(path, format="json")

    async def refused_everywhere(intruder: Party, victim: Party) -> None:
        before = await sync_to_async(_status_and_count)(victim.session)
        sid = victim.session.pk
        for method, path in (("get", f"/api/voice/sessions/{sid}"), ("get", f"/api/voice/sessions/{sid}/events"),
                             ("post", f"/api/voice/sessions/{sid}/pause"),
                             ("post", f"/api/voice/sessions/{sid}/resume")):
            response = await rest(intruder, method, path)
            assert response.status_code == 404, (intruder.name, path, response.status_code)
            assert str(sid) not in response.content.decode()
        assert await sync_to_async(_status_and_count)(victim.session) == before

    for party in parties:
        assert (await rest(party, "post", f"/api/voice/sessions/{party.session.pk}/pause")).status_code == 200
    await refused_everywhere(bob, alice)  # alice paused: bob's resume must not wake it
    await refused_everywhere(alice, bob)
    for party in parties:
        assert (await rest(party, "post", f"/api/voice/sessions/{party.session.pk}/resume")).status_code == 200
    await refused_everywhere(alice, bob)  # bob active: alice's pause must not stop it
    await refused_everywhere(bob, alice)

    # Late sockets replay everything, then stay live.
    for party in parties:
        hello = await party.open("late", "/ws/voice/?after=0")
        assert hello["sessions"] == [{"sessionId": str(party.session.pk), "status": "active",
                                      "roomUrl": party.room.url}]

    # More interleaved turns; a DailyCall on alice's socket pauses only her session; a typed
    # message from alice aimed at bob's session is refused, bob's own typed message goes through.
    for i in range(3, 5):
        for party in parties:
            await sync_to_async(_turn)(party, i)
    bob_before = await sync_to_async(_status_and_count)(bob.session)
    await alice.sockets["early"].send_json_to({"type": "user-message", "content": "hi bob",
                                               "sessionId": str(bob.session.pk)})
    await alice.sockets["early"].send_json_to({"type": "dailyCall.session.start"})
    await bob.sockets["late"].send_json_to({"type": "user-message", "content": "bob types"})
    for i in range(5, 7):
        for party in parties:
            await sync_to_async(_turn)(party, i)
    # Two sockets are two consumers: the end on the late socket must not overtake the start
    # on the early one, so wait until the pause has landed.
    async def alice_paused() -> bool:
        return (await sync_to_async(_status_and_count)(alice.session))[0] == SessionStatus.PAUSED
    await await_until(alice_paused, 10, "alice's DailyCall pause")
    await alice.sockets["late"].send_json_to({"type": "dailyCall.session.end"})

    # Wait until the database holds the socket-triggered events (the consumer acts asynchronously).
    async def settled() -> bool:
        a_events, b_events = await sync_to_async(_events_of)(alice), await sync_to_async(_events_of)(bob)
        a_statuses = [e["payload"].get("status") for e in a_events if e["type"] == "voice.session.status"]
        return a_statuses[-2:] == ["paused", "active"] and any(
            e["payload"].get("text") == "bob types" for e in b_events)

    deadline = time.monotonic() + 5
    while not await settled():
        assert time.monotonic() < deadline, "the socket-triggered pause/resume/message never landed"
        await asyncio.sleep(0.05)
    bob_status, bob_count = await sync_to_async(_status_and_count)(bob.session)
    # bob's session: still active, and only his own typed message and two turns (4 events each) added
    assert bob_status == SessionStatus.ACTIVE and bob_count == bob_before[1] + 1 + 2 * 4

    for party in parties:
        expected = await sync_to_async(_events_of)(party)
        # What each user was sent, in the order it was recorded (A, B, A, B ... interleaved).
        texts = [e["payload"]["text"] for e in expected if e["type"] == "voice.transcript"]
        assert [t for t in texts if "#" in t] == [
            f"{party.name} {verb} #{i}" for i in range(7) for verb in ("asks", "answered")]
        assert ("bob types" in texts) is (party is bob) and "hi bob" not in texts
        statuses = [e["payload"]["status"] for e in expected if e["type"] == "voice.session.status"]
        assert statuses == ["active", "paused", "active"] + (["paused", "active"] if party is alice else [])
        assert all(e["userId"] == str(party.user.pk) and e["sessionId"] == str(party.session.pk)
                   and e["roomUrl"] == party.room.url for e in expected)

        for label, communicator in party.sockets.items():
            got = party.received[label]
            await _drain(communicator, got, len(expected), timeout=10)
            errors = [m for m in got if m["type"] == "voice.error"]
            events = [m for m in got if m["type"] != "voice.error"]
            for message in events:  # every message this socket got is this user's
                assert message["userId"] == str(party.user.pk), (party.name, label, message)
                assert message["sessionId"] == str(party.session.pk), (party.name, label, message)
                assert message["roomUrl"] == party.room.url, (party.name, label, message)
            assert [m["id"] for m in events] == [e["id"] for e in expected], (party.name, label)
            assert events == expected, (party.name, label)  # all of them, in order, no duplicates
            # alice's early socket is told her message to bob's session went nowhere; no one else is.
            want_errors = ["no_active_session"] if (party is alice and label == "early") else []
            assert [e["payload"]["code"] for e in errors] == want_errors, (party.name, label, errors)

    # REST agrees: each user lists only their own session and its events.
    for party in parties:
        listed = (await rest(party, "get", "/api/voice/sessions")).json()
        assert [s["sessionId"] for s in listed] == [str(party.session.pk)]
        assert all(s["userId"] == str(party.user.pk) for s in listed)
        detail = (await rest(party, "get", f"/api/voice/sessions/{party.session.pk}")).json()
        assert detail["roomUrl"] == party.room.url and detail["status"] == "active"
        events = (await rest(party, "get", f"/api/voice/sessions/{party.session.pk}/events")).json()
        assert [e["id"] for e in events] == [e["id"] for e in await sync_to_async(_events_of)(party)]

    for party in parties:
        for communicator in party.sockets.values():
            await communicator.disconnect()
