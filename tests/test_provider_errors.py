"""A hosted model that throttles, hangs or refuses costs the user one clear error, never a dead session.

The LLM is the fake OpenAI API (tests/fakes/openai_api.py), which answers as
OpenAI does: a wrong key gets a 401 quoting the key masked, a throttled request
a 429 naming the organisation with Retry-After. The browser must see our own
codes and words, never those texts; the session carries on after a passing
failure and ends cleanly, saying which stage failed, after a permanent one.
"""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pipecat.frames.frames import ErrorFrame
from pipecat.utils.errors import ErrorCategory

from tests.fakes.openai_api import FakeOpenAI
from voicebot.provider_errors import describe, redact

LLM_KEY = "sk-test-llm-9a7e5d3c1b"


def test_provider_texts_are_redacted_for_the_log():
    text = ("Incorrect API key provided: sk-proj-ab************************9f3c. Rate limit reached for "
            "gpt-4.1-mini in organization org-Fk3x9QpLm2Vb7Ztr, project proj_Ab12Cd34.")
    logged = redact(text)
    assert "9f3c" not in logged and "Fk3x9" not in logged and "Ab12Cd34" not in logged
    assert "sk-***" in logged and "org-***" in logged


@pytest.mark.parametrize("category, code, fatal", [
    (ErrorCategory.AUTHENTICATION, "llm_auth_failed", True),
    (ErrorCategory.RATE_LIMIT, "llm_rate_limited", False),
    (ErrorCategory.SERVER, "llm_provider_error", False),
    (ErrorCategory.CONNECTIVITY, "llm_unreachable", False),
    (ErrorCategory.INVALID_REQUEST, "llm_rejected", True),
])
def test_each_kind_of_failure_has_its_code_and_plain_words(category, code, fatal):
    from voicebot.services.llm import VoiceLLMService

    llm = VoiceLLMService(base_url="http://127.0.0.1:9/v1", api_key="sk-x", model="m", system_prompt="",
                          notes_router=False)
    error = describe(ErrorFrame(error="Incorrect API key provided: sk-proj-ab****9f3c", processor=llm,
                                category=category))
    assert (error.code, error.stage, error.fatal) == (code, "llm", fatal)
    assert "sk-" not in error.message and "language model" in error.message


def _events_text(client) -> str:
    return json.dumps([e.get("payload") for e in client.events])


@pytest.mark.timeout(300)
def test_a_throttled_a_hanging_and_a_refusing_llm_as_the_user_meets_them(tmp_path):
    from tests.botharness import (BOT_ENV, active_session, is_final_transcript, is_status, start_worker,
                                  stop_worker)
    from tests.livesrv import start_server

    with FakeOpenAI(api_key=LLM_KEY) as llm_api:
        env = {**BOT_ENV, "VOICE_LLM": "openai", "VOICE_LLM_BASE_URL": llm_api.url, "VOICE_LLM_API_KEY": LLM_KEY,
               "VOICE_LLM_MODEL": "gpt-4.1-mini", "VOICE_HOSTED_TIMEOUT": "2"}
        server = start_server(tmp_path, env)
        worker = start_worker(server, "--pool-size", "1")
        try:
            async def scenario() -> None:
                client, peer, _session_id = await active_session(server, persistence=2, expect_new=True)

                async def say(text: str) -> None:
                    await client.ws.send(json.dumps({"type": "user-message", "content": text}))

                # Throttled: told at once (no waiting out Retry-After's 20 s, twice), in our words.
                llm_api.fail_next(1, 429)
                await say("Tell me a joke.")
                busy = await client.wait_for(lambda e: e["type"] == "voice.error", 15, "the rate-limit error")
                assert busy["payload"]["code"] == "llm_rate_limited" and busy["payload"]["fatal"] is False
                assert busy["payload"]["stage"] == "llm" and busy["payload"]["retryAfter"] == 20
                # ...and the next turn is answered.
                await say("What notes do I have?")
                await client.wait_for(lambda e: is_final_transcript("assistant")(e) and "note" in
                                      e["payload"]["text"].lower(), 30, "an answer after the 429")

                # Hanging: the request is given up after VOICE_HOSTED_TIMEOUT, and the call goes on.
                llm_api.hang_next(1, 120)
                await say("Tell me another joke.")
                stuck = await client.wait_for(lambda e: e["type"] == "voice.error" and
                                              e["payload"]["code"] == "llm_unreachable", 30, "the timeout error")
                assert stuck["payload"]["fatal"] is False
                await say("Do I have any notes?")
                answers = lambda: [e for e in client.events if is_final_transcript("assistant")(e)]  # noqa: E731
                before = len(answers())
                await client.wait_for(lambda e: len(answers()) > before, 30, "an answer after the hang")

                # Refused credentials: the session ends, saying the language model refused them.
                llm_api.api_key = "sk-test-rotated-0000"
                await say("One more question.")
                refused = await client.wait_for(lambda e: e["type"] == "voice.error" and
                                                e["payload"]["code"] == "llm_auth_failed", 20, "the auth error")
                assert refused["payload"]["fatal"] is True and refused["payload"]["stage"] == "llm"
                assert "credentials" in refused["payload"]["message"]
                await client.wait_for(is_status("unavailable"), 20, "the session ended as unavailable")

                # No provider text reached the browser: not the masked key, nor the organisation.
                seen = _events_text(client)
                for leaked in ("sk-test", LLM_KEY[-4:], "org-", "Incorrect API key", "Rate limit reached"):
                    assert leaked not in seen, leaked
                await peer.close()
                await client.close()

            asyncio.run(scenario())
        finally:
            stop_worker(worker)
            server.stop()
        log = open(worker.log.name).read()
        assert LLM_KEY not in log and "Fk3x9QpLm2Vb7Ztr" not in log
        assert "[VoiceSession]" in log and "llm_auth_failed" in log


def test_one_failure_raising_several_error_frames_is_told_once_a_turn():
    """A failed Cartesia answer raised three frames (one error per sentence sent, then Pipecat's
    "context completed with no audio"): the user was told three times."""
    from pipecat.frames.frames import LLMMessagesAppendFrame, UserStartedSpeakingFrame
    from pipecat.observers.base_observer import FramePushed
    from pipecat.processors.frame_processor import FrameDirection

    from voicebot.forwarder import EventForwarder
    from voicebot.services.tts import HibariTTSService

    tts = HibariTTSService(object(), lock=threading.Lock(), sample_rate=24000)

    def pushed(frame) -> FramePushed:
        return FramePushed(source=tts, destination=tts, frame=frame, direction=FrameDirection.UPSTREAM,
                           timestamp=0)

    async def run() -> list:
        forwarder = EventForwarder("session-1")
        forwarder._drain = lambda: asyncio.sleep(0)  # keep the events on the queue
        for _ in range(3):
            await forwarder.on_push_frame(pushed(ErrorFrame(error="Voice not found", processor=tts)))
        await forwarder.on_push_frame(FramePushed(source=tts, destination=tts, frame=UserStartedSpeakingFrame(),
                                                  direction=FrameDirection.DOWNSTREAM, timestamp=0))
        await forwarder.on_push_frame(pushed(ErrorFrame(error="Voice not found", processor=tts)))
        typed = LLMMessagesAppendFrame(messages=[{"role": "user", "content": "hi"}], run_llm=True)
        await forwarder.on_push_frame(FramePushed(source=tts, destination=tts, frame=typed,
                                                  direction=FrameDirection.DOWNSTREAM, timestamp=0))
        await forwarder.on_push_frame(pushed(ErrorFrame(error="Voice not found", processor=tts)))
        events = []
        while not forwarder.queue.empty():
            events.append(forwarder.queue.get_nowait())
        return events

    errors = [payload for kind, payload in asyncio.run(run()) if kind == "voice.error"]
    # Once before the user spoke again, once after, once after a typed turn.
    assert [e["code"] for e in errors] == ["tts_failed", "tts_failed", "tts_failed"]
