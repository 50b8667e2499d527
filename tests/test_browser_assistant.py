"""An assistant carried over from a hosted platform, end to end in headless Chromium (issue 13's
"done means"): an admin creates it in Django admin, with its own voice (a voice endpoint of its
own and a voice id), its own first message, a custom tool and a webhook; a user talks to it on its
page, switching microphones mid-call; the tool's endpoint and the webhook receiver, local servers
that check every signature, see the calls they should, the end-of-call report last.

The models are hosted ones faked by local servers (tests/fakes/openai_api.py): a custom tool needs
a model that makes tool calls, which the offline model does not (tests/test_browser.py is the
offline path in the browser)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.botharness import hosted_stack
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.receiver import SignedReceiver
from tests.test_browser import CHROMIUM, sign_in
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.timeout(420),
              pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed")]

KEY, VOICE_KEY = "sk-browser-default-2c7d", "sk-browser-studio-8e0a"
TOOL_SECRET, HOOK_SECRET = "whsec_browser_tool_51aa", "whsec_browser_hook_c3e9"
FIRST = "Hi, this is Orbit at the order desk. How can I help?"
ORDER = '{"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}'


def microphone(path: Path) -> Path:
    """A short question, then silence; the file loops, so the user asks again now and then."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), "Where is my order forty two"],
                   check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path), "pad", "2", "8"], check=True)
    return path


def admin_creates_the_assistant(browser, url: str, studio: FakeOpenAI, tool: SignedReceiver,
                                hooks: SignedReceiver) -> None:
    """What an admin does in Django admin: a voice endpoint, then the assistant with its tool."""
    from playwright.sync_api import expect

    page = sign_in(browser, url, "admin")
    page.goto("/admin/assistants/modelendpoint/add/")
    page.fill("#id_name", "studio-voice")
    page.select_option("#id_stage", "tts")
    page.select_option("#id_provider", "openai")
    page.fill("#id_base_url", studio.url)
    page.fill("#id_model", "tts-1")
    page.fill("#id_voice", "nova")
    page.fill("#id_api_key", VOICE_KEY)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    page.goto("/admin/assistants/assistantrecord/add/")
    page.fill("#id_name", "Orbit")  # the slug follows (admin's prepopulated field): orbit
    page.fill("#id_persona", "Orbit")
    page.fill("#id_voice", "coral")
    page.fill("#id_system_prompt", "You look up orders for customers. Be brief.")
    page.fill("#id_voice_persistence", "0")
    page.fill("#id_first_message", FIRST)
    page.select_option("#id_tts_endpoint", label="studio-voice (openai voice)")
    page.uncheck("#id_notes_tools")
    page.fill("#id_server_url", hooks.url + "/hooks")
    page.fill("#id_server_secret", HOOK_SECRET)
    page.select_option("#id_rollout_override", "on")
    page.get_by_text("Add another Custom tool").click()
    page.fill("#id_tools-0-name", "check_order")
    page.fill("#id_tools-0-description", "Look up where a customer's order is, by its number.")
    page.fill("#id_tools-0-parameters", ORDER)
    page.fill("#id_tools-0-url", tool.url + "/orders")
    page.fill("#id_tools-0-secret", TOOL_SECRET)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    page.context.close()


def test_an_admin_made_assistant_with_its_own_voice_first_message_tool_and_webhook(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    mic = microphone(tmp_path / "mic.wav")
    with FakeOpenAI(api_key=KEY, transcript="Where is my order 42?") as api, \
            FakeOpenAI(api_key=VOICE_KEY, max_speech_seconds=1.5) as studio, \
            SignedReceiver(TOOL_SECRET, reply={"result": {"order": "42", "status": "shipped on Tuesday"}}) as tool, \
            SignedReceiver(HOOK_SECRET) as hooks:
        with hosted_stack(tmp_path, api.url, KEY, env={"VOICE_WEBHOOK_POLL_SECONDS": "0.2"}) as (server, _worker), \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}",
                "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection"])
            admin_creates_the_assistant(browser, server.url, studio, tool, hooks)

            api.call_tool_next("check_order", {"order": "42"})  # the model's answer to the first question
            page = sign_in(browser, server.url)
            page.get_by_role("link", name="Orbit").click()
            page.get_by_role("button", name="Start voice").click()
            expect(page.locator("#status")).to_have_text("active", timeout=30_000)
            expect(page.locator("#messages li[data-kind=firstMessage]")).to_contain_text(FIRST, timeout=30_000)
            expect(page.locator("#tools li").first).to_contain_text("check_order", timeout=60_000)
            expect(page.locator("#messages li[data-role=assistant]").filter(has_text="shipped on Tuesday")
                   ).to_have_count(1, timeout=60_000)
            # Said while the endpoint worked: the tool's start message (its default), a line of its own.
            held = page.locator("#messages li[data-kind=startMessage]")
            expect(held).to_have_count(1)
            expect(held).to_contain_text("One moment.")

            # The microphone picker: another microphone mid-call, and the assistant still hears.
            picker = page.get_by_label("Microphone")
            expect(picker).to_be_enabled()
            labels = picker.locator("option").all_text_contents()
            assert "Fake Audio Input 1" in labels, labels
            picker.select_option(label="Fake Audio Input 1")
            page.wait_for_function("() => window.voiceSession.mic.getAudioTracks()[0].label === "
                                   "'Fake Audio Input 1' && window.voiceSession.pc.getSenders().some("
                                   "s => s.track && s.track.label === 'Fake Audio Input 1')", timeout=10_000)
            heard = page.locator("#messages li[data-role=user]").count()
            page.wait_for_function("n => document.querySelectorAll('#messages li[data-role=user]').length > n",
                                   arg=heard, timeout=60_000)  # the question again, through the new one
            expect(page.locator("#status")).to_have_text("active")

            page.get_by_role("button", name="Stop voice").click()
            expect(page.locator("#status")).to_have_text("inactive", timeout=10_000)
            browser.close()
            wait_until(lambda: any(r.json["type"] == "end-of-call-report" for r in hooks.signed()), 60,
                       "the end-of-call report at the webhook")  # delivered by the worker: before it stops

    # The tool's endpoint saw the model's call, signed, with the session's context.
    [first, *_] = tool.signed()
    assert not [r for r in tool.received if not r.signed]
    assert first.json["arguments"] == {"order": "42"} and first.json["assistant"] == "orbit"
    # The assistant's own voice spoke the first message: its endpoint, its key, its voice id.
    spoken = studio.requests_to("/v1/audio/speech", ok=True)
    assert spoken[0].json["input"] == FIRST and {r.json["voice"] for r in spoken} == {"coral"}
    assert not api.requests_to("/v1/audio/speech")  # not the workers' default voice
    # The webhook receiver: every event signed, the report last with the whole call.
    assert hooks.received and all(r.signed for r in hooks.received)
    kinds = [r.json["type"] for r in hooks.received]
    assert {"session.status", "transcript", "tool.call", "tool.result", "session.end"} <= set(kinds)
    report = next(r.json for r in hooks.received if r.json["type"] == "end-of-call-report")
    said = [(line["role"], line["text"]) for line in report["data"]["transcript"]]
    assert said[0] == ("assistant", FIRST) and ("user", "Where is my order 42?") in said
    assert report["data"]["toolCalls"][0]["name"] == "check_order" and report["data"]["summary"]
