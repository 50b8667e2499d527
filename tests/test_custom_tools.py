"""Custom tools per assistant (issue 13, section 3): defined in admin, called as signed POSTs with a
timeout and bounded retries, their answers given to the model and spoken, failures spoken politely."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django.core.exceptions import ValidationError

from assistants.models import AssistantTool
from assistants.signing import sign, verify
from tests.fakes.receiver import SignedReceiver
from tests.waiting import wait_until
from voicebot.custom_tools import HttpTool, call

SECRET = "whsec_test_tool_secret_0c1d"
ORDER_SCHEMA = {"type": "object", "properties": {"order": {"type": "string", "description": "The order number"}},
                "required": ["order"]}
CONTEXT = {"sessionId": "5f0c", "userId": "7", "assistant": "pearl"}


def test_a_signature_is_valid_only_for_its_secret_body_and_time():
    body = b'{"a":1}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    assert verify(SECRET, body, header, now=1_700_000_100)
    assert not verify("whsec_other", body, header, now=1_700_000_100)
    assert not verify(SECRET, b'{"a":2}', header, now=1_700_000_100)
    assert not verify(SECRET, body, header, now=1_700_000_000 + 301)  # too old: a replay
    assert not verify(SECRET, body, "v1=abc", now=1_700_000_000) and not verify(SECRET, body, "")


@pytest.mark.django_db
def test_a_tool_is_checked_in_the_admin_sense(assistant):
    def make(**fields) -> AssistantTool:
        return AssistantTool.objects.create(**{"assistant": assistant, "name": "check_order",
                                               "description": "Look up an order.", "parameters": ORDER_SCHEMA,
                                               "url": "https://tools.example.com/order", **fields})

    for fields, field in [({"name": "2fast"}, "name"), ({"name": "list_notes"}, "name"),
                          ({"parameters": {"type": "array"}}, "parameters"),
                          ({"parameters": {"type": "object", "properties": {"a": {"type": 7}}}}, "parameters"),
                          ({"url": "ftp://x"}, "url"), ({"timeout_seconds": 120}, "timeout_seconds"),
                          ({"max_retries": 9}, "max_retries")]:
        with pytest.raises(ValidationError) as caught:
            make(**fields)
        assert field in caught.value.message_dict, fields
    tool = make()
    assert tool.secret.startswith("whsec_") and len(tool.secret) > 40
    assert SECRET not in json.dumps(tool.job_spec()) and tool.secret not in json.dumps(tool.job_spec())
    assert tool.job_spec()["parameters"] == ORDER_SCHEMA


def test_a_tools_messages_have_defaults_and_reach_the_worker_as_written(assistant):
    from voicebot.custom_tools import load

    default = AssistantTool.objects.create(assistant=assistant, name="check_order", description="Look up an order.",
                                           parameters=ORDER_SCHEMA, url="https://tools.example.com/order")
    quiet = AssistantTool.objects.create(assistant=assistant, name="ping", description="Ping.",
                                         url="https://tools.example.com/ping", start_message="   ")
    worded = AssistantTool.objects.create(assistant=assistant, name="find_room", description="Find a room.",
                                          url="https://tools.example.com/room",
                                          start_message="  Let me look at the bookings. ")
    assert [default.start_message, quiet.start_message, worded.start_message] == [
        "One moment.", "", "Let me look at the bookings."]
    loaded = {t.name: t.start_message for t in load([default.job_spec(), quiet.job_spec(), worded.job_spec()])}
    assert loaded == {"check_order": "One moment.", "ping": "", "find_room": "Let me look at the bookings."}
    [tool] = load([default.job_spec()])
    assert (tool.delayed_message, tool.delayed_after, tool.failed_message) == (
        "Sorry, this is taking a little longer.", 4.0, "")
    with pytest.raises(ValidationError) as caught:
        AssistantTool.objects.create(assistant=assistant, name="slow", description="Slow.",
                                     url="https://tools.example.com/slow", delayed_after_seconds=0)
    assert "delayed_after_seconds" in caught.value.message_dict


class _Endpoint:
    """An endpoint as the handler's HTTP client sees it: each call waits for `release` (a slow
    endpoint the test lets go of), then answers the next status."""

    def __init__(self, *statuses: int) -> None:
        self.statuses, self.release, self.calls = list(statuses), asyncio.Event(), 0

    async def post(self, url: str, **kwargs: Any) -> Any:
        self.calls += 1
        await self.release.wait()
        status = self.statuses.pop(0)
        return type("Response", (), {"status_code": status, "text": "",
                                     "json": lambda self: {"result": {"status": "shipped"}}})()


def _run_handler(tool: HttpTool, endpoint: _Endpoint, *, release_on: str = "") -> tuple[list, list]:
    """Register `tool` as a session would, run one call of it, and return what was said (text, kind)
    and what the model was given [(result, properties)]."""
    from voicebot.custom_tools import register

    said: list[tuple[str, str]] = []
    given: list[tuple[dict, Any]] = []
    handlers: dict[str, Any] = {}
    llm = type("LLM", (), {"register_function": lambda self, name, fn, **kw: handlers.__setitem__(name, fn)})()

    async def announce(text: str, kind: str) -> None:
        said.append((text, kind))
        if kind == release_on:
            endpoint.release.set()

    async def result_callback(result: dict, *, properties: Any = None) -> None:
        given.append((result, properties))

    async def run() -> None:
        if not release_on:
            endpoint.release.set()
        register(llm, [tool], context=CONTEXT, http=endpoint, announce=announce)
        params = type("Params", (), {"arguments": {"order": "42"}, "tool_call_id": "call_1",
                                     "result_callback": staticmethod(result_callback)})()
        await handlers[tool.name](params)

    asyncio.run(run())
    return said, given


def test_a_slow_endpoint_gets_the_tools_delayed_message_and_its_answer_is_still_taken():
    tool = _tool("https://tools.example.com/order", start_message="One moment.",
                 delayed_message="Sorry, this is taking a little longer.", delayed_after=0.05)
    endpoint = _Endpoint(200)  # answers only once the delayed message has been said
    said, given = _run_handler(tool, endpoint, release_on="delayedMessage")
    assert said == [("One moment.", "startMessage"), ("Sorry, this is taking a little longer.", "delayedMessage")]
    assert given == [({"ok": True, "result": {"status": "shipped"}}, None)] and endpoint.calls == 1


def test_a_quick_endpoint_gets_no_delayed_message():
    tool = _tool("https://tools.example.com/order", start_message="", delayed_message="Sorry, a few more seconds.",
                 delayed_after=60)
    said, given = _run_handler(tool, _Endpoint(200))
    assert said == [] and given[0][0]["ok"] is True


def test_a_failed_call_says_the_tools_failed_message_and_the_model_is_not_asked():
    tool = _tool("https://tools.example.com/order", failed_message="I couldn't reach the order system just now.")
    said, given = _run_handler(tool, _Endpoint(503, 503))  # the try and its retry
    assert said == [("I couldn't reach the order system just now.", "failedMessage")]
    [(result, properties)] = given
    assert result["ok"] is False and properties.run_llm is False  # in the conversation; no answer asked for
    # Without one, the model is given the failure and asked to apologise, as before.
    said, given = _run_handler(_tool("https://tools.example.com/order"), _Endpoint(503, 503))
    assert said == [] and given[0][0]["ok"] is False and given[0][1] is None


def test_a_complete_message_is_the_endpoints_answer_in_the_tools_own_words():
    from voicebot.custom_tools import filled

    message = "I'm transferring you now. The wait is {wait}."
    tool = _tool("https://tools.example.com/human", start_message="", complete_message=message)
    endpoint = _Endpoint(200)
    endpoint_answer = {"transferring": True, "wait": "about two minutes"}
    endpoint.post = _answering(endpoint, endpoint_answer)  # type: ignore[method-assign]
    said, given = _run_handler(tool, endpoint)
    assert said == [("I'm transferring you now. The wait is about two minutes.", "completeMessage")]
    [(result, properties)] = given
    assert result == {"ok": True, "result": endpoint_answer} and properties.run_llm is False
    # An answer without a member the message needs is left to the model, as without a message.
    assert filled(message, {"transferring": True}) == "" and filled(message, "queued") == ""
    assert filled("Open now: {open}. Closes {closes}; {{sic}}.", {"open": True, "closes": "10 pm"}) == \
        "Open now: yes. Closes 10 pm; {sic}."


def _answering(endpoint: _Endpoint, answer: dict) -> Any:
    async def post(url: str, **kwargs: Any) -> Any:
        endpoint.calls += 1
        return type("Response", (), {"status_code": 200, "text": "", "json": lambda self: {"result": answer}})()
    return post


@pytest.mark.parametrize("message, ok", [
    ("Booked for {day} at {time}.", True), ("Done.", True), ("Literal {{braces}}.", True),
    ("The {order.status}.", False), ("Item {items[0]}.", False), ("{0} left.", False), ("{wait!r}", False),
    ("{wait:>10}", False), ("Unclosed {wait", False),
])
def test_a_complete_messages_placeholders_are_names_of_the_answers_members(assistant, message, ok):
    make = lambda: AssistantTool.objects.create(  # noqa: E731
        assistant=assistant, name="book", description="Book.", url="https://tools.example.com/book",
        complete_message=message)
    if ok:
        assert make().complete_message == message
    else:
        with pytest.raises(ValidationError) as caught:
            make()
        assert "complete_message" in caught.value.message_dict


def test_a_held_turn_reports_the_time_to_its_answer_after_the_start_message(monkeypatch):
    """A custom tool's turn: the bot speaks the start message first, then the answer. The first speaking
    event carries the turn's stages as always; the second the time from the same end of speech to the
    answer's own audio (what the conversation bench reports for such turns)."""
    from pipecat.frames.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame, VADUserStoppedSpeakingFrame
    from pipecat.observers.base_observer import FramePushed
    from pipecat.processors.frame_processor import FrameDirection

    from voicebot import forwarder as module
    from voicebot.forwarder import EventForwarder

    clock = [50.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    forwarder = EventForwarder("session-1")
    sent: list[tuple[str, dict]] = []
    forwarder.emit = lambda kind, payload: sent.append((kind, payload))  # type: ignore[method-assign]

    def push(frame, at: float) -> None:
        clock[0] = at
        asyncio.run(forwarder.on_push_frame(FramePushed(source=None, destination=None, frame=frame,
                                                        direction=FrameDirection.DOWNSTREAM, timestamp=0)))

    def speaking() -> list[dict]:
        return [p["latency"] for kind, p in sent if kind == "voice.bot.speaking" and p["speaking"]]

    push(VADUserStoppedSpeakingFrame(), 50.0)
    forwarder.holding_on()
    push(BotStartedSpeakingFrame(), 50.9)  # "One moment."
    push(BotStoppedSpeakingFrame(), 51.6)
    push(BotStartedSpeakingFrame(), 53.4)  # the answer
    assert speaking()[0]["totalMs"] == 900.0
    assert speaking()[1] == {"answerMs": 3400.0}
    # The next turn without a tool: no answer time carried over from the last one.
    push(VADUserStoppedSpeakingFrame(), 60.0)
    push(BotStartedSpeakingFrame(), 61.0)
    push(BotStoppedSpeakingFrame(), 62.0)
    push(BotStartedSpeakingFrame(), 63.0)  # the same answer resumed after a pause: not timed
    assert speaking()[2]["totalMs"] == 1000.0 and speaking()[3] is None


def _tool(url: str, **fields) -> HttpTool:
    return HttpTool(**{"name": "check_order", "description": "Look up an order.", "parameters": ORDER_SCHEMA,
                       "url": url, "timeout": 2.0, "retries": 1, "secret": SECRET, **fields})


def _call(tool: HttpTool, arguments: dict) -> dict:
    async def run() -> dict:
        async with httpx.AsyncClient() as http:
            return await call(tool, arguments, context=CONTEXT, http=http, tool_call_id="call_abc")
    return asyncio.run(run())


def test_a_call_is_a_signed_post_with_the_arguments_and_the_session_and_its_answer_is_the_result():
    with SignedReceiver(SECRET, reply={"result": {"status": "shipped", "eta": "Friday"}}) as endpoint:
        result = _call(_tool(endpoint.url + "/order"), {"order": "42"})
        assert result == {"ok": True, "result": {"status": "shipped", "eta": "Friday"}}
        [request] = endpoint.signed()
        assert request.path == "/order" and request.headers["idempotency-key"] == "call_abc"
        assert request.json["tool"] == "check_order" and request.json["arguments"] == {"order": "42"}
        assert {k: request.json[k] for k in CONTEXT} == CONTEXT and request.json["toolCallId"] == "call_abc"


def test_a_failed_attempt_is_retried_a_4xx_is_not_and_a_failure_is_an_error_to_apologise_for():
    with SignedReceiver(SECRET) as endpoint:
        endpoint.answer_next(503, {"error": "busy"})
        assert _call(_tool(endpoint.url), {"order": "1"})["ok"] is True  # the retry got through
        assert [r.status for r in endpoint.received] == [503, 200]

        endpoint.answer_next(404, {"error": "no such order"})
        failed = _call(_tool(endpoint.url), {"order": "2"})
        assert failed["ok"] is False and "HTTP 404" in failed["error"] and "Apologise" in failed["say"]
        assert [r.status for r in endpoint.received] == [503, 200, 404]  # not tried again

        endpoint.answer_next(200, {"late": True}, delay=1.5)  # answers after the 0.5 s timeout
        endpoint.answer_next(200, {"late": True}, delay=1.5)
        hung = _call(_tool(endpoint.url, timeout=0.5, retries=1), {"order": "3"})
        assert hung["ok"] is False and "no answer in time" in hung["error"]
        wait_until(lambda: len(endpoint.received) == 5, 10, "both timed-out attempts to reach the endpoint")


def test_an_unsigned_request_is_refused_by_the_receiver():
    with SignedReceiver(SECRET) as endpoint:
        refused = _call(_tool(endpoint.url, secret="whsec_wrong", retries=0), {"order": "4"})
        assert refused["ok"] is False and "HTTP 401" in refused["error"] and not endpoint.signed()


# --- end to end: the model calls the tool, the endpoint answers, the user hears it ------------------

def _pearl_with_order_tool(url: str, **more: Any) -> str:
    """Server-side setup: Pearl without her notes tools, with an order tool served at `url`."""
    return ("a = A.objects.get(slug='pearl'); a.notes_tools = False; a.save(); "
            "a.tools.create(name='check_order', description='Look up an order by number.', "
            f"parameters={ORDER_SCHEMA!r}, url='{url}/order', secret='{SECRET}', timeout_seconds=5, max_retries=1"
            + "".join(f", {k}={v!r}" for k, v in more.items()) + ")")


@pytest.mark.server
@pytest.mark.timeout(240)
def test_the_model_calls_the_assistants_tool_and_speaks_its_answer(tmp_path):
    from tests.botharness import active_session, hosted_stack, is_answer, is_start_message
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-tools-4e1a"
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            SignedReceiver(SECRET, reply={"result": {"status": "shipped on Tuesday"}}) as endpoint:
        setup = _pearl_with_order_tool(endpoint.url)
        with hosted_stack(tmp_path, api.url, key, setup=setup) as (server, worker):
            async def scenario() -> list[dict]:
                client, peer, session_id = await active_session(server, persistence=2, expect_new=True)
                api.call_tool_next("check_order", {"order": "42"})
                await client.ws.send(json.dumps({"type": "user-message", "content": "Where is order 42?"}))
                result = await client.wait_for(lambda e: e["type"] == "voice.tool.result", 30, "the tool's result")
                said = await client.wait_for(is_answer, 30, "the spoken answer")
                held = await client.wait_for(is_start_message, 30, "the tool's start message")
                # Said while the endpoint worked: before its result reached the page.
                assert client.events.index(held) < client.events.index(result)
                # The endpoint fails next: the user hears an apology, not silence or an invention.
                endpoint.answer_next(500, {"error": "down"})
                endpoint.answer_next(500, {"error": "down"})
                api.call_tool_next("check_order", {"order": "43"})
                await client.ws.send(json.dumps({"type": "user-message", "content": "And order 43?"}))
                await client.wait_for(lambda e: e["type"] == "voice.tool.result" and e is not result, 30,
                                      "the failed call's result")
                await client.wait_for(lambda e: is_answer(e) and e is not said, 30, "the answer after the failure")
                await peer.close()
                await client.close()
                return [result, said, session_id, held]

            result, said, session_id, held = asyncio.run(scenario())
    first, *retried = endpoint.signed()
    assert first.json["arguments"] == {"order": "42"} and first.json["sessionId"] == session_id
    assert first.json["assistant"] == "pearl" and first.json["userId"]
    assert [r.status for r in retried] == [500, 500] and retried[0].json["arguments"] == {"order": "43"}
    assert result["payload"]["name"] == "check_order"
    assert "shipped on Tuesday" in said["payload"]["text"]  # the fake model speaks the tool's result
    assert held["payload"]["text"] == "One moment."  # a new tool's start message, as a hosted platform's filler
    chats = api.requests_to("/v1/chat/completions", ok=True)
    tools = {t["function"]["name"] for t in chats[0].json["tools"]}
    assert "check_order" in tools and "list_notes" not in tools  # notes tools off for this assistant
    tool_messages = [m for m in chats[-1].json["messages"] if m["role"] == "tool"]
    assert "could not be reached" in tool_messages[-1]["content"] and "Apologise" in tool_messages[-1]["content"]
    # The start message was said, not answered: the model never sees it as its own words to follow.
    assert not any("One moment" in str(m.get("content")) for m in chats[-1].json["messages"])
    worker.log.seek(0)
    assert SECRET not in worker.log.read()


@pytest.mark.server
@pytest.mark.timeout(240)
def test_a_failed_call_is_answered_with_the_tools_failed_message(tmp_path):
    """The endpoint is down: the user hears the tool's failed message at once, the model is not asked
    for an apology, and on the next turn the model sees the failure."""
    from tests.botharness import active_session, hosted_stack, is_answer, reply_once_heard
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-failed-msg-77"
    sorry = "I couldn't reach the order system just now."
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, SignedReceiver(SECRET) as endpoint:
        endpoint.answer_next(503, {"error": "down"})
        endpoint.answer_next(503, {"error": "down"})
        setup = _pearl_with_order_tool(endpoint.url, failed_message=sorry)
        with hosted_stack(tmp_path, api.url, key, setup=setup) as (server, _):
            async def scenario() -> list[dict]:
                client, peer, _ = await active_session(server, persistence=2, expect_new=True)
                api.call_tool_next("check_order", {"order": "42"})
                await client.ws.send(json.dumps({"type": "user-message", "content": "Where is order 42?"}))
                said = await client.wait_for(is_answer, 30, "the failed message")
                # The user answers once they have heard it: the failure reaches the conversation behind
                # the message's audio (Pipecat keeps a tool's result in order with what is spoken).
                await reply_once_heard(client, said, "Never mind. Thanks!")
                await peer.close()
                await client.close()
                return [said]

            [said] = asyncio.run(scenario())
    assert said["payload"]["text"] == sorry and said["payload"]["kind"] == "failedMessage"
    assert len(endpoint.signed()) == 2  # the try and its retry
    chats = api.requests_to("/v1/chat/completions", ok=True)
    assert len(chats) == 2  # the call, then the next turn: no request for an apology in between
    history = chats[-1].json["messages"]
    tool_message = next(m for m in history if m["role"] == "tool")
    assert "could not be reached" in tool_message["content"]  # the model knows the call failed
    assert history[-1]["content"] == "Never mind. Thanks!"


@pytest.mark.server
@pytest.mark.timeout(240)
def test_a_hosted_model_in_router_mode_reaches_the_assistants_tool(tmp_path):
    """VOICE_LLM_TOOLS=router (a server whose model takes no tools): the router asks the hosted model
    whether the turn wants the tool, calls it, and the model answers from the result as a fact."""
    from tests.botharness import active_session, hosted_stack, is_final_transcript, is_start_message
    from tests.fakes.openai_api import FakeOpenAI

    key = "sk-test-router-e2e-5b"
    with FakeOpenAI(api_key=key, max_speech_seconds=1.0) as api, \
            SignedReceiver(SECRET, reply={"result": {"status": "shipped on Tuesday"}}) as endpoint:
        setup = _pearl_with_order_tool(endpoint.url, start_message="")  # an admin who wants no filler
        with hosted_stack(tmp_path, api.url, key, setup=setup, env={"VOICE_LLM_TOOLS": "router"}) as (server, _):
            async def scenario() -> list[dict]:
                client, peer, _ = await active_session(server, persistence=2, expect_new=True)
                api.answer_json_next({"request": True, "arguments": {"order": "42"}}, p_true=0.9)
                api.reply_with("Your order 42 shipped on Tuesday.")
                await client.ws.send(json.dumps({"type": "user-message", "content": "Where is order 42?"}))
                result = await client.wait_for(lambda e: e["type"] == "voice.tool.result", 30, "the tool's result")
                said = await client.wait_for(is_final_transcript("assistant"), 30, "the spoken answer")
                # Events reach the page in the order they were made: a start message would be here.
                held = [e for e in client.events if is_start_message(e)]
                await peer.close()
                await client.close()
                return [result, said, held]

            result, said, held = asyncio.run(scenario())
    [signed] = endpoint.signed()
    assert signed.json["arguments"] == {"order": "42"} and result["payload"]["name"] == "check_order"
    assert said["payload"]["text"] == "Your order 42 shipped on Tuesday."
    assert held == []  # the tool's start message is blank: nothing said while it worked
    check, answer = [r.json for r in api.requests_to("/v1/chat/completions", ok=True)]
    assert check["response_format"]["type"] == "json_schema" and "tools" not in check
    assert "Where is order 42?" in check["messages"][-1]["content"]
    # The model gets the tool's answer as a fact, not as tool messages it may not be able to read.
    assert "tools" not in answer and all(m["role"] != "tool" and "tool_calls" not in m for m in answer["messages"])
    assert any(m["role"] == "system" and "shipped on Tuesday" in m["content"] for m in answer["messages"])


@pytest.mark.django_db
def test_an_admin_gives_an_assistant_a_tool_and_turns_its_notes_tools_off(admin_client):
    from tests.test_admin import ADD_ASSISTANT, add_form_data

    res = admin_client.post(ADD_ASSISTANT, add_form_data(**{
        "notes_tools": None, "tools-TOTAL_FORMS": "1",
        "tools-0-name": "check_order", "tools-0-description": "Look up an order.",
        "tools-0-parameters": json.dumps(ORDER_SCHEMA), "tools-0-url": "https://tools.example.com/order",
        "tools-0-secret": SECRET, "tools-0-timeout_seconds": "5", "tools-0-max_retries": "2",
        "tools-0-start_message": "Let me check that order.", "tools-0-failed_message": "",
        "tools-0-delayed_message": "Sorry, this is taking a little longer.", "tools-0-delayed_after_seconds": "3",
        "tools-0-enabled": "on"}))
    assert res.status_code == 302, res.context["adminform"].form.errors if res.context else res
    tool = AssistantTool.objects.get(assistant__slug="nova")
    assert (tool.name, tool.url, tool.secret, tool.max_retries) == (
        "check_order", "https://tools.example.com/order", SECRET, 2)
    assert (tool.start_message, tool.delayed_after_seconds, tool.failed_message) == ("Let me check that order.", 3, "")
    assert tool.assistant.behaviour["notesTools"] is False
    bad = admin_client.post(ADD_ASSISTANT, add_form_data(**{
        "slug": "bad-tool", "tools-TOTAL_FORMS": "1", "tools-0-name": "end_call", "tools-0-description": "x",
        "tools-0-parameters": "{}", "tools-0-url": "https://x.example.com", "tools-0-secret": SECRET,
        "tools-0-timeout_seconds": "5", "tools-0-max_retries": "1", "tools-0-delayed_after_seconds": "4"}))
    assert bad.status_code == 200 and "built-in" in bad.content.decode()


# --- a hosted model in router mode: the check as structured output -------------------------------

def _hosted_check(api_url: str, key: str, model: str, sentence: str) -> tuple[object, dict]:
    """What a hosted LLM in router mode (no tools sent) makes of `sentence` for the order tool."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    from voicebot.services.llm import VoiceLLMService, reasoning_options
    from voicebot.services.tool_router import CustomToolRouter

    order = FunctionSchema(name="check_order", description="Look up an order's delivery status by its number.",
                           properties=ORDER_SCHEMA["properties"], required=ORDER_SCHEMA["required"])
    llm = VoiceLLMService(base_url=api_url, api_key=key, model=model, system_prompt="", notes_router=True,
                          local=False, **reasoning_options(model))  # as ModelBundle.make_llm builds it
    router = CustomToolRouter([order])

    async def decide():
        return await router.decide(sentence, llm._check_tool, candidates=router.candidates(sentence))

    return asyncio.run(decide()), llm._check_options


def test_a_hosted_model_in_router_mode_is_asked_for_a_strict_json_answer_and_its_probability():
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI(api_key="sk-test-router-1") as api:
        api.answer_json_next({"request": True, "arguments": {"order": "4512"}}, p_true=0.9)
        call, options = _hosted_check(api.url, "sk-test-router-1", "gpt-4.1-mini", "Where is my order 4512?")
        # Sure it is not a request: no call, even though the fake's JSON (its least answer) is well formed.
        refused, _ = _hosted_check(api.url, "sk-test-router-1", "gpt-4.1-mini", "Where is my order, do you think?")
        # Unsure and nothing the user said supports it: no call either (tool_router.BARE_CONFIDENCE).
        api.answer_json_next({"request": True, "arguments": {"order": None}}, p_true=0.4)
        unsure, _ = _hosted_check(api.url, "sk-test-router-1", "gpt-4.1-mini", "I hope my order comes soon.")
    assert call.tool == "check_order" and call.arguments == {"order": "4512"}
    assert call.confidence == pytest.approx(0.9)
    assert refused is None and unsure is None
    checks = api.requests_to("/v1/chat/completions", ok=True)
    assert len(checks) == 3  # each sentence was near the tool, so the model was asked
    first = checks[0].json
    assert first["response_format"]["json_schema"]["strict"] is True and "tools" not in first
    assert [m["role"] for m in first["messages"]] == ["system", "user"]  # no answer started for a hosted model
    assert first["logprobs"] is True and "grammar" not in first and options["temperature"] == 0


@pytest.mark.parametrize("flavour", ["reasoning", "groq"])
def test_a_check_option_the_server_refuses_is_dropped_for_the_session(flavour, caplog):
    """OpenAI's reasoning models refuse temperature 0 and log-probabilities; Groq refuses the latter."""
    from tests.fakes.llm_servers import FakeGroq
    from tests.fakes.openai_api import FakeOpenAI

    fake, model = ((FakeOpenAI(api_key="sk-test-router-2"), "gpt-5-mini") if flavour == "reasoning"
                   else (FakeGroq(), "llama-3.1-8b-instant"))
    with fake as api, caplog.at_level("INFO", logger="voicebot.services"):
        api.answer_json_next({"request": True, "arguments": {"order": "4512"}})
        call, options = _hosted_check(api.url, api.api_key, model, "Where is my order 4512?")
    assert call.tool == "check_order" and call.arguments == {"order": "4512"} and call.confidence is None
    refused = [r.json for r in api.requests_to(api.url_prefix + "/chat/completions", ok=False)]
    assert refused and "logprobs" not in options and "top_logprobs" not in options
    assert ("temperature" not in options) == (flavour == "reasoning")
    assert "refused logprobs in a custom tool check" in caplog.text
    answered = api.requests_to(api.url_prefix + "/chat/completions")[-1].json
    if flavour == "reasoning":  # it reasons inside the cap: the check's 80 tokens alone would come back empty
        assert answered["reasoning_effort"] == "low" and answered["max_completion_tokens"] == 80 + 1024
    else:
        assert "reasoning_effort" not in answered and answered["max_completion_tokens"] == 80


def test_the_fake_refuses_structured_output_requests_openai_would_refuse():
    """The fake's strictness is what the router-mode tests lean on: a malformed request fails here."""
    import openai

    from tests.fakes.openai_api import FakeOpenAI

    loose = {"type": "object", "properties": {"request": {"type": "boolean"}}, "required": ["request"]}
    partial = {**loose, "additionalProperties": False, "properties": {**loose["properties"], "x": {"type": "string"}}}
    asks = [({"response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": True,
                                                                         "schema": loose}}}, "additionalProperties"),
            ({"response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": True,
                                                                         "schema": partial}}}, "Missing 'x'"),
            ({"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": loose}}}, "pattern"),
            ({"response_format": {"type": "json_object"}}, "must contain the word 'json'"),
            ({"top_logprobs": 5}, "'logprobs' must be set to true"),
            ({"logprobs": True, "top_logprobs": 21}, "from 0 to 20")]
    with FakeOpenAI(api_key="sk-test-router-3") as api:
        client = openai.OpenAI(api_key="sk-test-router-3", base_url=api.url, max_retries=0)
        for extra, words in asks:
            with pytest.raises(openai.BadRequestError, match=words):
                client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}],
                                               **extra)


def test_the_same_routed_call_is_not_made_twice_for_a_late_piece_of_the_same_words():
    """Whisper's late "Lean." after "I would like to talk to a real person." came as a second turn of
    the same words on the conversation bench, and the router requested the transfer twice."""
    import time

    from pipecat.frames.frames import LLMContextFrame
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.tests.utils import run_test

    from tests.fakes.openai_api import FakeOpenAI
    from tests.test_tool_router import HUMAN, ORDER, Model
    from voicebot.services.llm import DUPLICATE_CALL_SECONDS, VoiceLLMService

    model = Model({("transfer_to_human", "real person"): (' true, "arguments": {}}', 0.9),
                   ("check_order_status", "4512"): (' true, "arguments": {"order_number": "4512"}}', 0.97)})
    calls: list[str] = []

    async def run(params) -> None:
        calls.append(f"{params.function_name} {dict(params.arguments)}")
        await params.result_callback({"ok": True, "result": {"transferring": True}})

    def service(url: str) -> VoiceLLMService:
        llm = VoiceLLMService(base_url=url, api_key="sk-test-twice-0", model="gpt-4.1-mini",
                              system_prompt="Be brief.", notes_router=True, local=False)
        llm.custom_tools = [ORDER, HUMAN]
        llm._check_tool = model  # type: ignore[method-assign]
        llm.register_function("transfer_to_human", run)
        llm.register_function("check_order_status", run)
        return llm

    turns = [[{"role": "user", "content": "I would like to talk to a real person."}],
             [{"role": "user", "content": "I would like to talk to a real person. Lean."}],
             [{"role": "user", "content": "Where is my order 4512?"}]]
    with FakeOpenAI(api_key="sk-test-twice-0") as api:
        asyncio.run(run_test(service(api.url), start_timeout=60, frames_to_send=[
            LLMContextFrame(LLMContext(messages=m)) for m in turns]))
        assert calls == ["transfer_to_human {}", "check_order_status {'order_number': '4512'}"]
        # Past the window the same request is a request again.
        later = service(api.url)
        later._last_call = (("check_order_status", '{"order_number": "4512"}'),
                            time.monotonic() - DUPLICATE_CALL_SECONDS - 1)
        asyncio.run(run_test(later, start_timeout=60, frames_to_send=[LLMContextFrame(LLMContext(messages=turns[2]))]))
    assert calls[2:] == ["check_order_status {'order_number': '4512'}"]
