"""The issue's 'done' flow against a real Daphne server: sign in like a browser, get the room
twice, join a bot, watch the events arrive on the websocket; plus the schema and docs pages."""
from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import websockets

from tests.livesrv import start_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("live"))
    yield srv
    srv.stop()


def _browser_login(url: str, username: str = "demo", password: str = "voice-demo") -> httpx.Client:
    """Sign in through the real login form, CSRF cookie and all, as a browser would."""
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=10)
    page = client.get("/accounts/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    home = client.post("/accounts/login/", data={"username": username, "password": password,
                                                  "csrfmiddlewaretoken": csrf, "next": "/"},
                       headers={"Referer": f"{url}/accounts/login/"})
    assert "sessionid" in client.cookies, "login failed"
    assert f"Signed in as <strong>{username}</strong>" in home.text and "Pearl" in home.text
    client.headers.update({"X-CSRFToken": client.cookies["csrftoken"], "Referer": url + "/",
                           "Origin": url})
    return client


def test_admin_can_log_in_and_see_assistants_and_rollout(server):
    admin = _browser_login(server.url, "admin")
    page = admin.get("/admin/assistants/assistantrecord/")
    assert page.status_code == 200 and "Pearl" in page.text
    rollout = admin.get("/admin/assistants/voicerollout/")
    assert rollout.status_code == 200 and 'name="percentage"' in rollout.text
    css = admin.get("/static/admin/css/base.css")
    assert css.status_code == 200 and "body" in css.text


def test_done_flow_room_twice_join_and_events_on_websocket(server):
    browser = _browser_login(server.url)
    no_csrf = httpx.post(f"{server.url}/api/voice/room", json={}, cookies=browser.cookies)
    assert no_csrf.status_code == 403  # session-authenticated POSTs need the CSRF token

    first = browser.post("/api/voice/room", json={"assistant": "pearl"})
    assert first.status_code == 200 and first.json()["reused"] is False
    second = browser.post("/api/voice/room", json={"assistant": "pearl"})
    assert second.json()["reused"] is True and second.json()["roomUrl"] == first.json()["roomUrl"]

    async def watch() -> list[dict]:
        ws_url = server.url.replace("http://", "ws://") + "/ws/voice/"
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": server.url}) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["type"] == "voice.connected"
            join = await asyncio.to_thread(browser.post, "/api/bot/join",
                                           json={"voiceOnly": True, "assistant": "pearl",
                                                 "room_url": first.json()["roomUrl"]})
            assert join.status_code == 202, join.text
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5))]
            leave = await asyncio.to_thread(browser.request, "DELETE", "/api/voice/room",
                                            json={"teardownDelay": 30})
            assert leave.status_code == 200
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return [join.json(), *got]

    join, start, left = asyncio.run(watch())
    assert start["type"] == "voice.session.start" and start["sessionId"] == join["sessionId"]
    assert start["payload"]["status"] == "connecting"
    assert left["type"] == "voice.session.status" and left["payload"]["status"] == "inactive"
    detail = browser.get(f"/api/voice/sessions/{join['sessionId']}").json()
    assert detail["status"] == "inactive" and detail["voiceOnly"] is True


def test_schema_and_docs_are_served(server):
    schema = httpx.get(f"{server.url}/api/schema/?format=json", timeout=10)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/voice/room", "/api/bot/join", "/api/voice/config", "/api/voice/sessions/{session_id}"):
        assert path in paths
    docs = httpx.get(f"{server.url}/api/docs/", timeout=10)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    asset = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', docs.text).group(1)
    assert httpx.get(f"{server.url}{asset}", timeout=10).status_code == 200  # served offline, no CDN


def test_schema_validates():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_event_recorded_by_another_process_reaches_the_websocket(server):
    """A bot worker is another process: what it records must reach the browser (embedded relay)."""
    browser = _browser_login(server.url)
    browser.post("/api/voice/room", json={})
    join = browser.post("/api/bot/join", json={"voiceOnly": True}).json()

    async def watch() -> dict:
        ws_url = server.url.replace("http://", "ws://") + "/ws/voice/"
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": server.url}) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # voice.connected
            await asyncio.to_thread(server.manage, "shell", "-c", (
                "from voicesessions.models import VoiceSession, SessionStatus\n"
                "from voicesessions.sessions import change_status\n"
                f"change_status(VoiceSession.objects.get(pk='{join['sessionId']}'), SessionStatus.ACTIVE,"
                " reason='bot_joined')\n"))
            while True:  # the join's own events may still be on their way: skip to ours
                event = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if event["payload"].get("reason") == "bot_joined":
                    return event

    event = asyncio.run(watch())
    assert event["type"] == "voice.session.status" and event["sessionId"] == join["sessionId"]
    assert event["payload"] == {"status": "active", "previous": "connecting", "reason": "bot_joined"}
