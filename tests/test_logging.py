"""Structured logs: LOG_FORMAT=json gives one JSON object per line with the line's [Prefix] as
`component` and the userId, roomUrl, sessionId and latency of what happened."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from tests.livesrv import ROOT
from tests.waiting import wait_until
from voiceproject.logformat import VoiceJsonFormatter
from voicesessions import sessions
from voicesessions.models import SessionStatus, VoiceSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """Everything the service's loggers print during the test, as parsed JSON objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(VoiceJsonFormatter())
    loggers = [logging.getLogger(name) for name in ("voicesessions", "voicebot", "assistants")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger in loggers:
        logger.removeHandler(handler)


def test_a_session_logs_json_with_the_seed_fields(api, user, json_lines):
    room = api.post("/api/voice/room", {}, format="json").json()
    join = api.post("/api/bot/join", {}, format="json").json()
    session = VoiceSession.objects.get(pk=join["sessionId"])
    sessions.change_status(session, SessionStatus.ACTIVE, reason="bot_ready")
    api.delete("/api/voice/room", {"teardownDelay": 30}, format="json")

    lines = json_lines()
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    by_component = {}
    for line in lines:
        by_component.setdefault(line.get("component"), []).append(line)
    assert {"DailyRoom", "BotJoin", "VoiceSession"} <= set(by_component)

    [room_line] = [line for line in by_component["DailyRoom"] if "latencyMs" in line]
    assert room_line["userId"] == str(user.pk) and room_line["roomUrl"] == room["roomUrl"]
    assert room_line["latencyMs"] >= 0
    join_line = next(line for line in by_component["BotJoin"] if line.get("sessionId") == join["sessionId"])
    assert join_line["roomUrl"] == room["roomUrl"] and join_line["userId"] == str(user.pk)
    active = next(line for line in by_component["VoiceSession"] if line.get("status") == "active")
    assert active["sessionId"] == join["sessionId"] and active["previous"] == "connecting"
    assert active["roomUrl"] == room["roomUrl"]
    assert room["token"] not in json.dumps(lines)


def test_log_format_json_configures_every_logger():
    """The setting itself: a fresh process with LOG_FORMAT=json prints JSON for Django's loggers too."""
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('django.request').warning('Not Found: /nowhere'); "
            "logging.getLogger('voicebot.worker').info('[BotJoin] worker w1 ready', extra={'latencyMs': 5.0})")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "voiceproject.settings",
                               "LOG_FORMAT": "json", "SECRET_KEY": "x", "VOICE_VAR_DIR": "/tmp/voice-logtest"})
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines[0]["logger"] == "django.request" and lines[0]["level"] == "WARNING"
    assert lines[1]["component"] == "BotJoin" and lines[1]["latencyMs"] == 5.0


def test_a_json_server_prints_nothing_but_json_including_access_lines(tmp_path):
    """serve.sh's way: LOG_FORMAT=json and Daphne's own access stream off; every line is JSON."""
    import asyncio

    import httpx
    import websockets

    from tests.livesrv import start_server

    server = start_server(tmp_path, {"LOG_FORMAT": "json"}, daphne_args=("--access-log", "/dev/null"))
    try:
        assert httpx.post(f"{server.url}/api/voice/room", json={}).status_code == 401
        assert httpx.get(f"{server.url}/api/voice/sessions?token=query-secret").status_code == 401
        assert httpx.get(f"{server.url}/metrics").status_code == 200

        async def refused_socket() -> None:
            try:
                async with websockets.connect(server.url.replace("http", "ws") + "/ws/voice/"):
                    pass
            except websockets.InvalidStatus:
                pass
        asyncio.run(refused_socket())

        expected = {("POST", "/api/voice/room", 401), ("GET", "/api/voice/sessions", 401), ("GET", "/metrics", 200),
                    ("WS", "/ws/voice/", 403)}

        def logged() -> bool:
            # The server writes an access line a moment after the client has its answer: wait for them.
            seen = set()
            for raw in server.log_path.read_text().splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # checked strictly below, once the server has stopped
                if line.get("logger") == "voiceproject.access":
                    seen.add((line["method"], line["path"], line["status"]))
            return seen >= expected

        wait_until(logged, 10, "the four access lines")
    finally:
        server.stop()
    text = server.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # raises on any non-JSON line
    access = [line for line in lines if line["logger"] == "voiceproject.access"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= expected
    assert all(a["durationMs"] >= 0 for a in access)
    assert "query-secret" not in text
