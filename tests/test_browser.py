"""The assistant page in real headless Chromium with a fake microphone, against the live
server and a running bot worker: start, hear and read an answer, pause/resume, stop.
/metrics is scraped before, during and after, and every series must have moved; the
staff dashboard then draws its charts from what these tests did."""
from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from tests.botharness import BOT_ENV, start_worker, stop_worker
from tests.livesrv import ROOT, free_port, metric, scrape, start_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(420),
              pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The fake microphone's question: one long breath (no pause a VAD would end the turn on), long
# enough that interim transcripts show while it lasts even when a decode takes ~2.5 s (the busy
# 2-core machine of 2026-12-03: a 4.5 s question was over before any interim decode finished).
QUESTION = ("Could you please tell me in one short sentence what the name of the capital city of the beautiful "
            "country of France in western Europe is")  # no gap over 40 ms: "...France is and which..." had 140 ms
# Silence after the question: the assistant's time to start answering before the repeat barges in.
# 7 s was too little for a busy 2-core machine (a first answer took ~15 s), so it was interrupted
# each time and never shown.
ANSWER_SECONDS = 30
# The module's metrics snapshots and its worker, shared by the tests in file order.
STATE: dict[str, object] = {}


def fake_microphone(path: Path) -> Path:
    """The question wrapped in silence; Chromium loops the file, so the user asks again and again."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), QUESTION], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path),
                    "pad", "5", str(ANSWER_SECONDS)], check=True)
    return path


def loop_seconds(path: Path) -> float:
    """How long one loop of the fake microphone's file lasts."""
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def sign_in(browser, url: str, username: str = "demo", viewport: dict | None = None):
    """A new browser context signed in with the demo password: the site's form, or the admin's for `admin`."""
    page = browser.new_context(base_url=url, viewport=viewport or {"width": 1280, "height": 1000}).new_page()
    page.on("console", lambda m: print("[browser]", m.type, m.text))
    page.goto("/admin/login/" if username == "admin" else "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("voice-demo")
    page.get_by_role("button", name="Log in" if username == "admin" else "Sign in").click()
    return page


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("browser")
    # A short offer wait: the last test stops the worker and the page must give up soon.
    server = start_server(var, {**BOT_ENV, "VOICE_OFFER_WAIT_SECONDS": "5"})
    worker = start_worker(server, "--pool-size", "2")
    STATE.update(worker=worker, before=scrape(server))
    yield server, var
    stop_worker(worker)
    server.stop()


@pytest.fixture
def page(stack):
    from playwright.sync_api import sync_playwright

    server, var = stack
    mic = fake_microphone(var / "mic.wav")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection"])
        page = sign_in(browser, server.url, viewport={"width": 390, "height": 844})
        page.get_by_role("link", name="Pearl").click()
        yield page
        browser.close()


def at_least(page, selector: str, count: int, *, timeout: float) -> None:
    """Wait until the page has at least `count` elements matching `selector` (a question heard as two
    turns adds two lines, not one)."""
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=[selector, count],
                           timeout=timeout)


_INBOUND_AUDIO = """async () => {
  const stats = await window.voiceSession.pc.getStats();
  for (const s of stats.values()) if (s.type === 'inbound-rtp' && s.kind === 'audio') return {
    packets: s.packetsReceived, samples: s.totalSamplesReceived, energy: s.totalAudioEnergy,
    concealed: s.concealedSamples, silentConcealed: s.silentConcealedSamples};
  return null; }"""


def _the_answers_were_heard_and_the_silence_came_as_dtx(page) -> None:
    """Chrome's own figures for the bot's audio over the call (its inbound-rtp stats): the answers
    reached the speaker with their energy; the bot's settled silence came as Opus DTX (one packet
    in twenty, TOC byte only), so far fewer packets than the 20 ms frames played; and Chrome played
    the gaps as DTX, not as losses to conceal (concealing them stretched the next answer's start:
    7.4 s of loud concealment in a call whose gaps followed a normal packet, 0.1 s sending them all)."""
    stats = page.evaluate(_INBOUND_AUDIO)
    assert stats and stats["energy"] > 0.01, stats  # the answers' voice was played, not silence
    frames = stats["samples"] / 960
    assert frames > 30 * 50, stats  # half a minute and more of the call played
    assert stats["packets"] < 0.5 * frames, stats  # the bot is silent most of a call
    assert stats["concealed"] - stats["silentConcealed"] < 0.01 * stats["samples"], stats


def test_talk_to_the_assistant_in_the_browser(page, stack):
    from playwright.sync_api import expect

    server, var = stack
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    status = page.locator("#status")
    expect(status).to_have_text("inactive")
    button = page.get_by_role("button", name="Start voice")
    button.click()
    expect(status).to_have_text("connecting")
    expect(page.locator("#toggle")).to_be_disabled()
    expect(status).to_have_text("active", timeout=30_000)
    expect(page.locator("#toggle")).to_have_text("Stop voice")
    during = scrape(server)  # the gauges that only move while someone talks
    assert metric(during, "voice_sessions_active", status="active") == 1
    assert metric(during, "voice_provider_participants", provider="local") == 2
    assert max(v for (name, _), v in during.items() if name == "voice_bot_pool_utilization") == 0.5
    STATE["during"] = during

    # Everything the interim line shows, recorded as it changes.
    page.evaluate("""() => { window.interims = [];
      new MutationObserver(() => window.interims.push(document.getElementById('interim').textContent))
        .observe(document.getElementById('interim'), {childList: true, characterData: true, subtree: true}); }""")
    # What the user said, across their lines: on a busy machine the browser's audio can stall
    # mid-sentence for longer than the end-of-turn wait, and the question then arrives as two turns,
    # or cut. In two fresh-clone runs of the whole suite the fake microphone's audio stopped reaching
    # the bot for a while (Pipecat: "No audio frame received") during the first question; the
    # microphone repeats it every loop, so the user is given three loops to be heard, as a user
    # would simply ask again.
    page.wait_for_function("""() => /capital .*France/i.test(Array.from(
        document.querySelectorAll('#messages li[data-role=user]'), li => li.textContent).join(' '))""",
                           timeout=(3 * loop_seconds(var / "mic.wav") + 10) * 1000)
    expect(page.locator("#messages li[data-role=assistant]").first).not_to_be_empty(timeout=ANSWER_SECONDS * 1000)
    expect(page.locator("#speaking")).to_have_text("Pearl is speaking", timeout=30_000)
    expect(page.locator("#error")).to_be_hidden()
    # VOICE_SAVE_SCREENSHOTS=1 refreshes the README's picture; otherwise it goes to the test's folder.
    shots = ROOT / "docs" if os.environ.get("VOICE_SAVE_SCREENSHOTS") == "1" else var
    page.screenshot(path=str(shots / "assistant-active.png"), full_page=True)

    # daily-js is served locally but only fetched for Daily rooms (this room is local).
    assert not [u for u in requested if "daily-esm" in u]
    assert page.request.get("/static/vendor/daily-js/daily-esm.js").ok

    # Mutual exclusion: a video call pauses the voice session and its end resumes it.
    page.get_by_role("button", name="Join video call").click()
    expect(status).to_have_text("paused", timeout=10_000)
    heard = page.locator("#messages li[data-role=user]").count()
    answered = page.locator("#messages li[data-role=assistant]").count()
    # A whole loop of the fake microphone: the question is asked again meanwhile and must go unheard.
    loop = loop_seconds(var / "mic.wav")
    page.wait_for_timeout(loop * 1000)
    assert page.locator("#messages li[data-role=user]").count() == heard
    page.get_by_role("button", name="Leave video call").click()
    expect(status).to_have_text("active", timeout=10_000)
    at_least(page, "#messages li[data-role=user]", heard + 1, timeout=(loop + 20) * 1000)
    # While the user spoke (the question asked again after the call), the page showed what was
    # heard so far, before the final line.
    shown = page.evaluate("() => window.interims")
    assert any(s.startswith("You: ") and len(s) > len("You: ") for s in shown), shown

    # Typed text goes to the assistant too (and the notes tool answers). The question was just heard,
    # so the fake microphone is at the start of its silence: muting it now (the page's Mute
    # button) keeps its next repeat from barging in on the typed request's answer.
    page.get_by_role("button", name="Mute").click()
    expect(page.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("() => window.voiceSession.mic.getAudioTracks().every(t => !t.enabled)")
    # ...and the user lets the assistant answer it before typing (a typed request waits behind that
    # answer, which took ~30 s on the busy 2-core machine).
    at_least(page, "#messages li[data-role=assistant]", answered + 1, timeout=90_000)
    expect(page.locator("#speaking")).not_to_have_text("Pearl is speaking", timeout=60_000)
    page.get_by_label("Type to Pearl").fill("Take a note called browser saying it works")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#tools li").first).to_contain_text("create_note", timeout=40_000)
    _the_answers_were_heard_and_the_silence_came_as_dtx(page)

    page.get_by_role("button", name="Stop voice").click()
    expect(status).to_have_text("inactive", timeout=10_000)
    expect(page.get_by_role("button", name="Start voice")).to_be_enabled()
    mic_tracks_live = page.evaluate("() => window.voiceSession.mic !== null")
    assert mic_tracks_live is False  # the microphone is released

    # A reload inside the persistence window reuses the room and the bot.
    page.reload()
    with page.expect_console_message(lambda m: "room ready" in m.text) as ready:
        page.get_by_role("button", name="Start voice").click()
    assert "reused: true" in ready.value.text
    expect(status).to_have_text("active", timeout=30_000)
    page.get_by_role("button", name="Stop voice").click()
    expect(status).to_have_text("inactive", timeout=10_000)


def test_microphone_denied_is_explained_with_a_retry(stack):
    from playwright.sync_api import expect, sync_playwright

    server, var = stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--deny-permission-prompts"])
        page = sign_in(browser, server.url)
        page.goto("/assistants/pearl/")
        page.get_by_role("button", name="Start voice").click()
        expect(page.get_by_role("alert")).to_contain_text("Microphone access was denied", timeout=15_000)
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        expect(page.locator("#status")).to_have_text("unavailable")
        browser.close()


def test_assistant_outside_the_rollout_says_so(stack, page):
    from playwright.sync_api import expect

    server, var = stack
    server.manage("shell", "-c", "from assistants.models import AssistantRecord as A; "
                  "a = A.objects.get(slug='pearl'); a.rollout_override = 'off'; a.save()")
    try:
        page.reload()
        expect(page.get_by_text("Voice is not enabled for this assistant.")).to_be_visible()
        expect(page.get_by_role("button", name="Start voice")).to_be_disabled()
    finally:
        server.manage("shell", "-c", "from assistants.models import AssistantRecord as A; "
                      "a = A.objects.get(slug='pearl'); a.rollout_override = 'inherit'; a.save()")


def test_every_metric_moved_and_the_dashboard_charts_it(stack, tmp_path):
    """Errors the user can meet in the browser, then /metrics against the snapshot taken before
    this module ran, then the dashboard's charts and its rollback."""
    from django.core import signing
    from playwright.sync_api import expect, sync_playwright

    from voicesessions.tokens import SALT

    server, var = stack
    # Daily down: a second server on the same database whose room provider cannot be reached.
    daily_down = start_server(var, {**BOT_ENV, "VOICE_PROVIDER": "daily", "DAILY_API_KEY": "test-key",
                                    "DAILY_API_URL": f"http://127.0.0.1:{free_port()}/v1",
                                    "DAILY_MAX_RETRIES": "0", "DAILY_HTTP_TIMEOUT": "2"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection"])
            page = sign_in(browser, daily_down.url)
            page.goto("/assistants/pearl/")
            page.get_by_role("button", name="Start voice").click()
            expect(page.get_by_role("alert")).to_contain_text("room provider failed", timeout=15_000)

            # An expired room token presented by the signed-in browser.
            page = sign_in(browser, server.url)
            demo_id = server.manage("shell", "-c", "from django.contrib.auth.models import User; "
                                    "print(User.objects.get(username='demo').pk)").strip()
            expired = signing.dumps({"r": f"voice-{demo_id}", "u": demo_id, "n": "demo", "o": False, "exp": 1},
                                    key=server.env["SECRET_KEY"], salt=SALT, compress=True)
            refused = page.request.post("/api/voice/webrtc/offer", data={"sdp": "v=0", "type": "offer"},
                                        headers={"Authorization": f"Bearer {expired}"})
            assert refused.status == 401 and "expired" in refused.json()["detail"]

            # No bot worker left: the page gives up on the bot join and says so.
            stop_worker(STATE["worker"])
            page.goto("/assistants/pearl/")
            page.get_by_role("button", name="Start voice").click()
            expect(page.get_by_role("alert")).to_contain_text("not available", timeout=30_000)

            before, during, after = STATE["before"], STATE["during"], scrape(server)
            moved = {
                "sessions created": metric(after, "voice_sessions_created_total", mode="voice_only")
                > metric(before, "voice_sessions_created_total", mode="voice_only"),
                "active sessions": metric(during, "voice_sessions_active", status="active")
                > metric(before, "voice_sessions_active", status="active"),
                "session duration": metric(after, "voice_session_duration_seconds_count")
                > metric(before, "voice_session_duration_seconds_count"),
                "room reuse": metric(after, "voice_room_reuse_ratio") > metric(before, "voice_room_reuse_ratio"),
                "bot join latency": metric(after, "voice_bot_join_latency_seconds_count")
                > metric(before, "voice_bot_join_latency_seconds_count"),
                "bot acquire": metric(after, "voice_bot_acquire_seconds_count")
                > metric(before, "voice_bot_acquire_seconds_count"),
                "bot spawn": metric(after, "voice_bot_spawn_seconds_count")
                > metric(before, "voice_bot_spawn_seconds_count"),
                "pool utilisation": max([v for (n, _), v in during.items() if n == "voice_bot_pool_utilization"])
                > max([v for (n, _), v in before.items() if n == "voice_bot_pool_utilization"]),
                "voice-only ratio": metric(after, "voice_sessions_voice_only_ratio")
                > metric(before, "voice_sessions_voice_only_ratio"),
                "tool calls": metric(after, "voice_tool_calls_total", tool="create_note")
                > metric(before, "voice_tool_calls_total", tool="create_note"),
                "active rooms": metric(after, "voice_provider_active_rooms", provider="local")
                > metric(before, "voice_provider_active_rooms", provider="local"),
                "minutes": metric(after, "voice_provider_minutes_total", provider="local")
                > metric(before, "voice_provider_minutes_total", provider="local"),
                "participants": metric(during, "voice_provider_participants", provider="local")
                > metric(before, "voice_provider_participants", provider="local"),
                "tokens issued": metric(after, "voice_tokens_issued_total", provider="local")
                > metric(before, "voice_tokens_issued_total", provider="local"),
            }
            for kind in ("room_creation", "bot_join", "audio", "token_expiry"):
                moved[f"errors {kind}"] = (metric(after, "voice_errors_total", kind=kind)
                                           > metric(before, "voice_errors_total", kind=kind))
            assert [name for name, ok in moved.items() if not ok] == []

            # The dashboard draws all of it; VOICE_SAVE_SCREENSHOTS=1 refreshes docs/dashboard.png.
            admin = sign_in(browser, server.url, "admin")
            admin.goto("/admin/dashboard/?period=24h")
            expect(admin.locator("body[data-charts-ready='1']")).to_have_count(1)
            drawn = admin.evaluate("() => [...document.querySelectorAll('canvas')].map("
                                   "c => c.chart && c.chart.data.datasets[0].data.some(v => v))")
            assert drawn == [True] * 6, drawn
            assert int(admin.locator("#total-sessions").inner_text()) >= 1
            shots = ROOT / "docs" if os.environ.get("VOICE_SAVE_SCREENSHOTS") == "1" else tmp_path
            admin.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            admin.get_by_role("button", name="Roll back to 0%").click()
            expect(admin.locator("#rollout-percentage")).to_have_text("0%")
            config = page.request.get("/api/voice/config?assistant=pearl").json()
            assert config["usePipecatVoice"] is False
            browser.close()
    finally:
        daily_down.stop()
