"""The Daily path end to end, as production meets it, against a simulated Daily.

The server and a real bot worker run with VOICE_PROVIDER=daily. Rooms and
meeting tokens come from the checking fake of Daily's REST API; the meeting
inside a room is tests/fakes/daily_call.py, which Pipecat's real DailyTransport
reaches through the stand-in `daily` module (tests/fakes/daily_sim, first on
the worker's PYTHONPATH). The user is a SimUser: it joins with the token from
POST /api/voice/room, speaks espeak-ng speech in real time and listens.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.botharness import BOT_ENV, Client, is_final_transcript, is_status, start_worker, stop_worker
from tests.fakes.daily_api import FakeDailyAPI, sign_jwt
from tests.fakes.daily_call import SimUser
from tests.livesrv import ROOT, start_server
from tests.waiting import await_until

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]
KEY = "sim-daily-key"


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    var = tmp_path_factory.mktemp("daily")
    with FakeDailyAPI(api_key=KEY) as fake:
        env = {**BOT_ENV, "VOICE_PROVIDER": "daily", "DAILY_API_KEY": KEY, "DAILY_API_URL": fake.url,
               "DAILY_MAX_RETRIES": "0", "DAILY_SIM_ADDRESS": fake.calls.address,
               # The worker's `import daily` finds the stand-in before daily-python.
               "PYTHONPATH": str(ROOT / "tests" / "fakes" / "daily_sim"),
               "VOICE_DAILY_JOIN_TIMEOUT": "10"}
        server = start_server(var, env)
        worker = start_worker(server, "--pool-size", "2")
        yield server, fake, var
        stop_worker(worker)
        server.stop()


def speech(text: str, path: Path) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono samples, what the simulated microphone sends."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    import wave

    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


async def _start(server, fake, *, expect: str = "active", voice_only: bool = True):
    """Sign in, get the room, ask for the bot, join the meeting as the user."""
    client = Client(server, "demo")
    await client.open_ws()
    room = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
    assert room["provider"] == "daily", room
    join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": voice_only,
                                                    "sessionPersistence": 30})
    assert join.status_code in (200, 202), join.text
    user = SimUser(fake.calls.address, room["roomName"], room["token"]).join()
    if expect:
        assert user.error is None, user.error
        await client.wait_for(lambda e: is_status(expect)(e) and e["sessionId"] == join.json()["sessionId"],
                              30, f"session {expect}")
    return client, user, room, join.json()["sessionId"]


async def _ask(client, user: SimUser, samples: np.ndarray, mark: int) -> None:
    """Say something; wait for its transcript, the bot's answer and its voice at the user's end."""
    heard_before = user.loud_ms
    user.say(samples)
    await client.wait_for(lambda e: client.events.index(e) >= mark and is_final_transcript("user")(e),
                          40, "the user's words transcribed")
    await client.wait_for(lambda e: client.events.index(e) >= mark and is_final_transcript("assistant")(e),
                          40, "the bot's answer")
    # 200 ms of it: a one-word answer ("Four.", "Blue.") is ~400 ms of voice.
    await await_until(lambda: user.loud_ms > heard_before + 200, 30, "the bot's voice in the meeting")


async def _end(client, user: SimUser | None) -> None:
    if user is not None:
        user.leave()
    client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
    await client.close()


def _bot_in(fake, room_name: str) -> bool:
    return any(p["info"]["userId"].startswith("bot-") for p in fake.calls.present(room_name))


def test_join_and_first_answer(daily):
    server, fake, var = daily
    question = speech("What is the capital of France?", var / "france.wav")

    async def scenario() -> None:
        client, user, room, session_id = await _start(server, fake)
        bot = next(p for p in fake.calls.present(room["roomName"]) if p["info"]["userId"].startswith("bot-"))
        assert len(bot["info"]["userId"]) == 36  # "bot-" and the whole session id
        assert bot["tracks"]["video"]["state"] == "blocked"  # voiceOnly: camera off
        await _ask(client, user, question, len(client.events))
        await _end(client, user)

    asyncio.run(scenario())


def test_voice_only_false_shows_a_still_avatar(daily):
    server, fake, var = daily

    async def scenario() -> None:
        client, user, room, session_id = await _start(server, fake, voice_only=False)

        def camera() -> dict:
            bot = next(p for p in fake.calls.present(room["roomName"]) if p["info"]["userId"].startswith("bot-"))
            return bot["tracks"]["video"]
        await await_until(lambda: camera()["state"] == "playable", 15, "the bot's camera to show its avatar")
        assert (camera()["width"], camera()["height"]) == (160, 160)
        await _end(client, user)

    asyncio.run(scenario())


def test_the_bot_waits_in_the_room_and_answers_a_return_inside_the_window(daily):
    server, fake, var = daily
    question = speech("What is two plus two?", var / "sum.wav")

    async def scenario() -> None:
        client, user, room, session_id = await _start(server, fake)
        user.leave()
        await client.wait_for(is_status("inactive"), 20, "inactive once the user left")
        assert _bot_in(fake, room["roomName"]), "the bot left the room during the persistence window"
        # The user comes back: the page asks for the room and the bot again, and joins.
        again = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        assert again["reused"] is True
        rejoin = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True}).json()
        assert rejoin["sessionId"] == session_id and rejoin["queued"] is False
        mark = len(client.events)
        back = SimUser(fake.calls.address, again["roomName"], again["token"]).join()
        assert back.error is None, back.error
        await client.wait_for(lambda e: client.events.index(e) >= mark and is_status("active")(e), 20,
                              "active again")
        await _ask(client, back, question, mark)
        await _end(client, back)

    asyncio.run(scenario())


def test_a_reload_inside_the_window_is_admitted(daily):
    """The old page's participant lingers (a closed tab Daily has not timed out yet); the room
    request ejects it, so the reloaded page is not refused as a third participant."""
    server, fake, var = daily
    question = speech("What colour is the sky?", var / "sky.wav")

    async def scenario() -> None:
        client, old_page, room, session_id = await _start(server, fake)
        mark = len(client.events)
        again = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        await await_until(lambda: any(e["op"] == "ejected" for e in old_page.events), 10, "the stale page ejected")
        client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True})
        new_page = SimUser(fake.calls.address, again["roomName"], again["token"]).join()
        assert new_page.error is None, new_page.error
        assert len(fake.calls.present(room["roomName"])) == 2  # the bot and the new page: max_participants holds
        await client.wait_for(lambda e: client.events.index(e) >= mark and is_status("active")(e), 20,
                              "active on the reloaded page")
        await _ask(client, new_page, question, len(client.events))
        await _end(client, new_page)

    asyncio.run(scenario())


def test_an_expired_bot_token_is_reported_not_silent(daily):
    server, fake, var = daily

    async def scenario() -> None:
        real_clock = fake.calls.clock
        fake.calls.clock = lambda: time.time() + 30 * 24 * 3600  # every token has expired by join time
        try:
            client, user, room, session_id = await _start(server, fake, expect="")
            assert user.error is not None and user.error["type"] == "exp-token"  # the page is refused too
            error = await client.wait_for(lambda e: e["type"] == "voice.error" and e["sessionId"] == session_id
                                          and e["payload"]["code"] == "bot_join_failed", 30,
                                          "voice.error for the failed bot join")
            assert "exp-token" in error["payload"]["message"], error
            await client.wait_for(is_status("unavailable"), 10, "unavailable")
        finally:
            fake.calls.clock = real_clock
        # Retry (the page's button): a new join replaces the failed session and works.
        retry = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True}).json()
        assert retry["sessionId"] != session_id and retry["queued"] is True
        again = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        user = SimUser(fake.calls.address, again["roomName"], again["token"]).join()
        await client.wait_for(lambda e: is_status("active")(e) and e["sessionId"] == retry["sessionId"], 30,
                              "the retried session active")
        await _end(client, user)

    asyncio.run(scenario())


def test_a_full_room_is_reported(daily):
    server, fake, var = daily

    async def scenario() -> None:
        client = Client(server, "demo")
        await client.open_ws()
        room = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        squatters = []
        for name in ("intruder-1", "intruder-2"):  # tokens for the room, not this user's
            token = sign_jwt({"r": room["roomName"], "ud": name, "exp": int(time.time()) + 600}, KEY)
            squatters.append(SimUser(fake.calls.address, room["roomName"], token).join())
        assert all(s.error is None for s in squatters)
        join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True}).json()
        error = await client.wait_for(lambda e: e["type"] == "voice.error" and e["sessionId"] == join["sessionId"]
                                      and e["payload"]["code"] == "bot_join_failed", 30, "voice.error for the full room")
        assert "meeting-full" in error["payload"]["message"]
        detail = client.http.get(f"/api/voice/sessions/{join['sessionId']}").json()
        assert detail["status"] == "unavailable"
        for squatter in squatters:
            squatter.leave()
        await _end(client, None)

    asyncio.run(scenario())


def test_teardown_deletes_the_room_only_after_the_bot_left(daily):
    server, fake, var = daily

    async def scenario() -> None:
        client, user, room, session_id = await _start(server, fake)
        bot_id = next(p["info"]["userId"] for p in fake.calls.present(room["roomName"])
                      if p["info"]["userId"].startswith("bot-"))
        start = len(fake.timeline)
        user.leave()
        left = client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        assert left.json()["state"] == "deleted"
        timeline = list(fake.timeline)[start:]
        bot_left = timeline.index(("left", room["roomName"], bot_id, "leftCall"))
        deleted = timeline.index(("rest", "DELETE", f"/v1/rooms/{room['roomName']}"))
        assert bot_left < deleted, timeline[-8:]
        await client.close()

    asyncio.run(scenario())


# The page's daily-js, replaced by a stub with daily-js's rule on call objects: a second one on
# the page is refused ("Duplicate DailyIframe instances are not allowed") unless it is created
# with allowMultipleCallInstances. It records what the page asks of it.
DAILY_JS_STUB = """
const stub = window.__dailyStub = {instances: [], calls: [], joined: null};
class CallObject {
  constructor(options) { this.options = options; this.handlers = {}; stub.instances.push(this); }
  on(event, handler) { (this.handlers[event] = this.handlers[event] || []).push(handler); return this; }
  async join(options) { stub.joined = {url: options.url, token: options.token}; stub.calls.push(["join"]); }
  setLocalAudio(on) { stub.calls.push(["setLocalAudio", on]); return this; }
  async leave() { stub.calls.push(["leave"]); }
  async destroy() { stub.instances.splice(stub.instances.indexOf(this), 1); stub.calls.push(["destroy"]); }
}
export default {
  createCallObject(options = {}) {
    if (stub.instances.length && !options.allowMultipleCallInstances)
      throw new Error("Duplicate DailyIframe instances are not allowed");
    stub.calls.push(["createCallObject", !!options.allowMultipleCallInstances]);
    return new CallObject(options);
  },
};
"""


def test_pause_and_resume_with_the_pages_other_daily_call(daily):
    """In the browser: the voice session's call object and the page's own DailyCall coexist; the
    DailyCall pauses voice through Daily's own mute (setLocalAudio), and its end resumes it."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM, sign_in

    if not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed")
    server, fake, var = daily
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream"])
        page = sign_in(browser, server.url)
        page.route("**/static/vendor/daily-js/daily-esm.js",
                   lambda route: route.fulfill(status=200, content_type="text/javascript", body=DAILY_JS_STUB))
        page.goto("/assistants/pearl/")
        page.get_by_role("button", name="Start voice").click()
        page.wait_for_function("() => window.__dailyStub && window.__dailyStub.joined", timeout=20_000)
        joined = page.evaluate("() => window.__dailyStub.joined")
        # The stub carries no media: the user's side of the meeting is a SimUser with the page's token.
        user = SimUser(fake.calls.address, joined["url"].rsplit("/", 1)[-1], joined["token"]).join()
        assert user.error is None, user.error
        status = page.locator("#status")
        expect(status).to_have_text("active", timeout=30_000)

        page.get_by_role("button", name="Join video call").click()
        expect(status).to_have_text("paused", timeout=10_000)
        stub = page.evaluate("() => ({n: window.__dailyStub.instances.length, calls: window.__dailyStub.calls})")
        assert stub["n"] == 2, stub  # both call objects live on the page
        assert ["setLocalAudio", False] in stub["calls"]
        expect(page.locator("#error")).to_be_hidden()

        page.get_by_role("button", name="Leave video call").click()
        expect(status).to_have_text("active", timeout=10_000)
        calls = page.evaluate("() => window.__dailyStub.calls")
        assert calls[-1] == ["setLocalAudio", True] or ["setLocalAudio", True] in calls, calls
        assert page.evaluate("() => window.__dailyStub.instances.length") == 1

        page.evaluate("() => window.dispatchEvent(new Event('pagehide'))")
        assert ["leave"] in page.evaluate("() => window.__dailyStub.calls")  # a closed tab leaves the call
        page.get_by_role("button", name="Stop voice").click()
        expect(status).to_have_text("inactive", timeout=10_000)
        user.leave()
        browser.close()
