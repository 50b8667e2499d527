"""An assistant's conversation behaviour (issue 13): first message, silence prompt, ending the call,
the max-duration warning.

The monitor (voicebot/behaviour.py) is driven here by the frames a pipeline would
push, with the bot's hooks recorded; its clocks are the settings' seconds, kept
short, and every wait is a bounded poll for what the user would hear or see.
The same settings end to end, through a worker: tests/test_behaviour_e2e.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pipecat.frames.frames import (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, LLMFullResponseEndFrame,
                                   LLMFullResponseStartFrame, LLMTextFrame, UserStartedSpeakingFrame,
                                   UserStoppedSpeakingFrame)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from tests.waiting import await_until
from voicebot.behaviour import Behaviour, CallMonitor, says_end_phrase


class Hooks:
    """The BotSession's side: what was said, and whether (and why) the session ended."""

    def __init__(self) -> None:
        self.paused = False
        self.said: list[tuple[str, str]] = []
        self.ended: list[str] = []

    async def say(self, text: str, kind: str) -> None:
        self.said.append((kind, text))

    async def end(self, reason: str) -> None:
        self.ended.append(reason)


_SOURCE = FrameProcessor()


async def push(monitor: CallMonitor, *frames: Any) -> None:
    for frame in frames:
        await monitor.on_push_frame(FramePushed(source=_SOURCE, destination=_SOURCE, frame=frame,
                                                direction=FrameDirection.DOWNSTREAM, timestamp=0))


async def bot_says(monitor: CallMonitor, text: str) -> None:
    """An answer from the model, then its audio played out."""
    await push(monitor, LLMFullResponseStartFrame(), LLMTextFrame(text), LLMFullResponseEndFrame(),
               BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_first_message_is_said_on_connect_once_and_not_when_the_assistant_waits():
    async def scenario(behaviour: Behaviour, greet: bool) -> list:
        hooks = Hooks()
        monitor = CallMonitor(behaviour, hooks)
        await monitor.start(greet=greet)
        monitor.stop()
        return hooks.said

    hello = "Hello, this is the front desk. How can I help?"
    assert run(scenario(Behaviour(first_message=hello), True)) == [("firstMessage", hello)]
    assert run(scenario(Behaviour(first_message=hello), False)) == []  # a reconnect: said already
    waits = Behaviour(first_message=hello, first_message_mode="assistant-waits-for-user")
    assert run(scenario(waits, True)) == []


def test_silence_gets_the_prompt_then_ends_the_session_and_speech_resets_it():
    async def scenario() -> Hooks:
        hooks = Hooks()
        monitor = CallMonitor(Behaviour(silence_timeout=0.3, silence_prompt="Still there?",
                                        end_call_message="Goodbye for now."), hooks)
        await monitor.start(greet=False)
        await await_until(lambda: hooks.said, 5, "the silence prompt")
        assert hooks.said == [("silencePrompt", "Still there?")]
        await push(monitor, BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())  # the prompt played
        # The user answers: the silence starts over, and the next prompt comes, not the end.
        await push(monitor, UserStartedSpeakingFrame(), UserStoppedSpeakingFrame())
        await bot_says(monitor, "Good, how can I help?")
        await await_until(lambda: len(hooks.said) == 2, 5, "a second silence prompt")
        assert hooks.said[1] == ("silencePrompt", "Still there?") and not hooks.ended
        await push(monitor, BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())
        await await_until(lambda: len(hooks.said) == 3, 5, "the end message")  # silent again: the end
        assert hooks.said[2] == ("endCallMessage", "Goodbye for now.") and not hooks.ended
        await push(monitor, BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())  # the goodbye played
        await await_until(lambda: hooks.ended, 5, "the session to end")
        monitor.stop()
        return hooks

    assert run(scenario()).ended == ["silence_timeout"]


def test_no_silence_prompt_while_the_bot_thinks_or_speaks_or_the_session_is_paused():
    async def scenario() -> Hooks:
        hooks = Hooks()
        monitor = CallMonitor(Behaviour(silence_timeout=0.2), hooks)
        await monitor.start(greet=False)
        await push(monitor, UserStartedSpeakingFrame(), UserStoppedSpeakingFrame(), LLMFullResponseStartFrame())
        await asyncio.sleep(0.5)  # the model takes longer than the timeout: that is not the user's silence
        assert hooks.said == []
        await push(monitor, LLMTextFrame("An answer."), LLMFullResponseEndFrame(), BotStartedSpeakingFrame())
        await asyncio.sleep(0.5)
        assert hooks.said == []
        hooks.paused = True
        await push(monitor, BotStoppedSpeakingFrame())
        await asyncio.sleep(0.5)
        assert hooks.said == []  # paused: the microphone is muted on purpose
        monitor.stop()
        return hooks

    run(scenario())


def test_an_end_call_phrase_the_assistant_says_ends_the_session_after_it_is_heard():
    async def scenario() -> Hooks:
        hooks = Hooks()
        monitor = CallMonitor(Behaviour(end_call_phrases=("goodbye", "talk soon")), hooks)
        await monitor.start(greet=False)
        await bot_says(monitor, "Goodness, by the way, I like that.")  # "good... by" is not "goodbye"
        assert hooks.ended == []
        await push(monitor, LLMFullResponseStartFrame(), LLMTextFrame("Alright, goodbye!"), LLMFullResponseEndFrame())
        assert hooks.ended == []  # said, but not yet heard
        await push(monitor, BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())
        await await_until(lambda: hooks.ended, 5, "the session to end")
        monitor.stop()
        return hooks

    assert run(scenario()).ended == ["end_call_phrase"]


@pytest.mark.parametrize("text, phrase", [
    ("Goodbye!", "goodbye"), ("OK. Talk soon, Sam.", "talk soon"), ("TALK  SOON", "talk soon"),
    ("Good bye", None), ("goodbyes are hard", None), ("Let's talk. Soon we'll know.", "talk soon"),
])
def test_end_call_phrases_match_whole_words(text, phrase):
    assert says_end_phrase(text, ("goodbye", "talk soon")) == phrase


def test_the_end_call_tool_waits_for_the_models_goodbye_then_says_the_end_message():
    async def scenario() -> Hooks:
        hooks = Hooks()
        monitor = CallMonitor(Behaviour(end_call_tool=True, end_call_message="Thanks for calling."), hooks)
        await monitor.start(greet=False)
        await monitor.end_call("end_call_tool", answer_coming=True)
        assert hooks.said == []  # the model answers the tool's result first
        await bot_says(monitor, "You're welcome, have a nice day.")
        assert hooks.said == [("endCallMessage", "Thanks for calling.")] and not hooks.ended
        await push(monitor, BotStartedSpeakingFrame(), BotStoppedSpeakingFrame())
        await await_until(lambda: hooks.ended, 5, "the session to end")
        monitor.stop()
        return hooks

    assert run(scenario()).ended == ["end_call_tool"]


def test_a_goodbye_that_never_plays_still_ends_the_session(monkeypatch):
    import voicebot.behaviour as behaviour

    monkeypatch.setattr(behaviour, "END_FALLBACK_SECONDS", 0.2)

    async def scenario() -> Hooks:
        hooks = Hooks()
        monitor = CallMonitor(Behaviour(end_call_message="Bye."), hooks)
        await monitor.start(greet=False)
        await monitor.end_call("end_call_tool")
        await await_until(lambda: hooks.ended, 5, "the session to end without the goodbye heard")
        monitor.stop()
        return hooks

    assert run(scenario()).ended == ["end_call_tool"]


def test_the_max_duration_warning_comes_its_seconds_before_the_end():
    async def scenario() -> Hooks:
        hooks = Hooks()
        ends_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.3)
        monitor = CallMonitor(Behaviour(duration_warning_seconds=1, duration_warning="One minute left."), hooks,
                              ends_at=ends_at)
        await monitor.start(greet=False)
        assert hooks.said == []
        await await_until(lambda: hooks.said, 5, "the warning")
        assert dt.datetime.now(dt.timezone.utc) < ends_at  # before the cut-off
        monitor.stop()
        return hooks

    assert run(scenario()).said == [("durationWarning", "One minute left.")]


@pytest.mark.django_db
def test_the_assistants_settings_are_validated_and_reach_the_job():
    from django.core.exceptions import ValidationError

    from assistants.models import AssistantRecord

    assistant = AssistantRecord(name="Desk", slug="desk", first_message="Hello!", silence_timeout=20,
                                end_call_phrases=[" goodbye ", "talk soon"], end_call_tool=True,
                                duration_warning_seconds=60)
    assistant.save()
    assert assistant.behaviour == {
        "firstMessage": "Hello!", "firstMessageMode": "assistant-speaks-first", "silenceTimeout": 20,
        "silencePrompt": "Are you still there?", "endCallPhrases": ["goodbye", "talk soon"], "endCallMessage": "",
        "endCallTool": True, "durationWarningSeconds": 60,
        "durationWarning": "We are nearly out of time for this call.", "interruptionMinWords": 0,
        "interruptionMinSeconds": 0, "notesTools": True, "recordCalls": False}
    for field, value in [("end_call_phrases", "goodbye"), ("end_call_phrases", ["ok", ""]),
                         ("end_call_phrases", ["x"] * 21), ("silence_timeout", 1), ("silence_timeout", 4000),
                         ("duration_warning_seconds", 3600), ("first_message_mode", "whenever"),
                         ("interruption_min_words", 11), ("interruption_min_seconds", 11)]:
        bad = AssistantRecord(name="Bad", slug=f"bad-{field}", **{field: value})
        with pytest.raises(ValidationError) as caught:
            bad.save()
        assert field in caught.value.message_dict, (field, value)


def test_interruption_words_set_how_much_the_user_says_before_the_bot_stops():
    from pipecat.turns.user_start.min_words_user_turn_start_strategy import MinWordsUserTurnStartStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    from voicebot.pipeline import turn_strategies

    stop = object()
    (start,) = turn_strategies(Behaviour.from_job({"interruptionMinWords": 3}), stop).start
    assert isinstance(start, MinWordsUserTurnStartStrategy) and start._min_words == 3
    default = turn_strategies(Behaviour.from_job({}), stop)
    assert [type(s) for s in default.start] == [type(s) for s in UserTurnStrategies().start]  # Pipecat's own
    assert default.stop == [stop]


def test_interruption_seconds_let_short_backchannels_pass_while_the_bot_speaks():
    """An assistant set to 1.5 s: "mm-hm" (0.4 s) while it talks does not stop it; a real
    interruption (2 s) does; with the bot quiet, speech starts the user's turn at once."""
    from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

    from voicebot.interruptions import MinSecondsUserTurnStartStrategy
    from voicebot.pipeline import turn_strategies

    (strategy,) = turn_strategies(Behaviour.from_job({"interruptionMinSeconds": 1.5}), object()).start
    assert isinstance(strategy, MinSecondsUserTurnStartStrategy)
    started: list[float] = []

    async def on_started(_strategy, _params) -> None:
        started.append(heard)

    strategy.add_event_handler("on_user_turn_started", on_started)
    chunk = InputAudioRawFrame(audio=b"\0\0" * 1600, sample_rate=16000, num_channels=1)  # 0.1 s

    async def speak(seconds: float) -> None:
        nonlocal heard
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        for _ in range(round(seconds * 10)):
            heard = round(heard + 0.1, 1)
            await strategy.process_frame(chunk)
        await strategy.process_frame(VADUserStoppedSpeakingFrame())

    async def scenario() -> None:
        nonlocal heard
        await strategy.process_frame(BotStartedSpeakingFrame())
        heard = 0.0
        await speak(0.4)  # a backchannel
        assert started == []
        heard = 0.0
        await speak(2.0)  # an interruption: the turn starts 1.5 s into it
        assert started == [1.5]
        await strategy.handle_user_turn_started()
        await strategy.process_frame(BotStoppedSpeakingFrame())
        heard = 0.0
        await speak(0.3)  # the bot is quiet: at once
        assert started == [1.5, 0.0]

    heard = 0.0
    run(scenario())
    both = turn_strategies(Behaviour.from_job({"interruptionMinWords": 3, "interruptionMinSeconds": 2}), object())
    assert [type(s).__name__ for s in both.start] == ["MinWordsUserTurnStartStrategy",
                                                       "MinSecondsUserTurnStartStrategy"]


@pytest.mark.django_db
def test_the_config_api_tells_the_page_what_the_assistant_does_on_its_own(api, assistant):
    assistant.first_message = "Hello, I'm Pearl."
    assistant.silence_timeout = 30
    assistant.end_call_phrases = ["goodbye"]
    assistant.save()
    body = api.get("/api/voice/config", {"assistant": "pearl"}).json()
    assert body["conversation"]["firstMessage"] == "Hello, I'm Pearl."
    assert body["conversation"]["firstMessageMode"] == "assistant-speaks-first"
    assert body["conversation"]["silenceTimeout"] == 30 and body["conversation"]["endCallPhrases"] == ["goodbye"]
    assert not any("_" in key for key in body["conversation"])


# --- end to end: a worker on hosted fakes, a WebRTC peer, the user's websocket ---------------------

def pearl(**fields) -> str:
    """Code that sets the demo assistant's settings in a live server's database, as an admin would
    (botharness.hosted_stack's `setup`)."""
    import json

    return ("import json; a = A.objects.get(slug='pearl'); "
            f"[setattr(a, k, v) for k, v in json.loads({json.dumps(json.dumps(fields))}).items()]; a.save()")


def _bot_speaking(e: dict) -> bool:
    return e["type"] == "voice.bot.speaking" and e["payload"]["speaking"]


@pytest.mark.server
@pytest.mark.timeout(240)
def test_first_message_silence_prompt_and_silence_ending_as_the_user_meets_them(tmp_path):
    from tests.botharness import active_session, hosted_stack, is_final_transcript
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-behaviour-1f2e"
    setup = pearl(first_message="Hello, this is Pearl at the front desk.", silence_timeout=3,
                  silence_prompt="Are you still there?", end_call_message="I'll hang up now. Goodbye.")
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            hosted_stack(tmp_path, api.url, key, setup=setup) as (server, _worker):
        async def scenario() -> None:
            client, peer, session_id = await active_session(server, persistence=2, expect_new=True)
            first = await client.wait_for(is_final_transcript("assistant"), 20, "the first message")
            assert first["payload"] == {"role": "assistant", "text": "Hello, this is Pearl at the front desk.",
                                        "final": True, "kind": "firstMessage"}
            await client.wait_for(_bot_speaking, 20, "the first message spoken")
            prompt = await client.wait_for(lambda e: e["payload"].get("kind") == "silencePrompt", 30,
                                           "the silence prompt")
            assert prompt["payload"]["text"] == "Are you still there?"
            goodbye = await client.wait_for(lambda e: e["payload"].get("kind") == "endCallMessage", 30,
                                            "the end message")
            assert goodbye["payload"]["text"] == "I'll hang up now. Goodbye."
            ended = await client.wait_for(lambda e: e["type"] == "voice.session.end", 30, "the session's end")
            assert ended["payload"]["reason"] == "silence_timeout" and ended["sessionId"] == session_id
            assert client.events.index(first) < client.events.index(prompt) < client.events.index(ended)
            await peer.close()
            await client.close()

        asyncio.run(scenario())
    spoken = [r.json["input"] for r in api.requests_to("/v1/audio/speech", ok=True)]
    assert spoken[:3] == ["Hello, this is Pearl at the front desk.", "Are you still there?",
                          "I'll hang up now. Goodbye."]  # each line was spoken, in order
    assert not api.requests_to("/v1/chat/completions")  # the user never spoke: the model was never asked


@pytest.mark.server
@pytest.mark.timeout(240)
def test_the_model_ends_the_call_with_its_tool_or_a_phrase(tmp_path):
    import json

    from tests.botharness import active_session, hosted_stack, is_final_transcript
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-behaviour-9c8b"
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            hosted_stack(tmp_path, api.url, key, setup=pearl(end_call_tool=True, end_call_phrases=["talk soon"])
                         ) as (server, _worker):
        async def call(typed: str) -> dict:
            client, peer, _session_id = await active_session(server, persistence=2)
            await client.ws.send(json.dumps({"type": "user-message", "content": typed}))
            ended = await client.wait_for(lambda e: e["type"] == "voice.session.end", 40, "the session's end")
            await client.wait_for(is_final_transcript("assistant"), 5, "the bot's last words")
            await peer.close()
            await client.close()
            return ended

        api.call_tool_next("end_call", {"reason": "the user is done"})
        ended = asyncio.run(call("That's all, thanks."))
        assert ended["payload"]["reason"] == "end_call_tool"
        ended = asyncio.run(call("Say talk soon to me."))  # the fake echoes it: the assistant says the phrase
        assert ended["payload"]["reason"] == "end_call_phrase"
    chats = api.requests_to("/v1/chat/completions", ok=True)
    assert "end_call" in {t["function"]["name"] for t in chats[0].json["tools"]}


@pytest.mark.server
@pytest.mark.timeout(240)
def test_the_max_duration_warning_is_spoken_before_the_cut_off(tmp_path):
    from tests.botharness import active_session, hosted_stack
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-behaviour-5d4c"
    setup = pearl(voice_max_duration=40, duration_warning_seconds=32, duration_warning="We have half a minute left.")
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            hosted_stack(tmp_path, api.url, key, setup=setup) as (server, _worker):
        async def scenario() -> None:
            client, peer, session_id = await active_session(server, persistence=2, expect_new=True)
            warning = await client.wait_for(lambda e: e["payload"].get("kind") == "durationWarning", 30,
                                            "the max-duration warning")
            assert warning["payload"]["text"] == "We have half a minute left."
            assert not any(e["type"] == "voice.session.end" for e in client.events)  # before the cut-off
            await client.wait_for(_bot_speaking, 20, "the warning spoken")
            await peer.close()
            client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
            await client.close()

        asyncio.run(scenario())
    assert "We have half a minute left." in [r.json["input"] for r in api.requests_to("/v1/audio/speech", ok=True)]


@pytest.mark.server
@pytest.mark.timeout(240)
def test_the_first_message_is_in_the_models_context(tmp_path):
    """Spoken first, and the model's first request holds it as the assistant's words."""
    from tests.botharness import active_session, hosted_stack, is_answer, reply_once_heard
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-first-ctx-1"
    first = "Hello, this is the front desk. How can I help?"
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            hosted_stack(tmp_path, api.url, key, setup=pearl(first_message=first)) as (server, _):
        async def scenario() -> None:
            client, peer, _ = await active_session(server, persistence=2, expect_new=True)
            said = await client.wait_for(lambda e: is_answer(e) and e["payload"].get("kind") == "firstMessage", 30,
                                         "the first message")
            await reply_once_heard(client, said, "What time is checkout?")
            await peer.close()
            await client.close()

        asyncio.run(scenario())
    chats = api.requests_to("/v1/chat/completions", ok=True)
    assert {"role": "assistant", "content": first} in chats[0].json["messages"]
