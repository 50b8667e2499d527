"""An answer that claims an action no tool took is not spoken; the assistant says what it did not do.

With the router (the offline default) the model never calls a tool. When the router heard no
request ("dot down at my passport x-pires in March", Whisper's "Jot down that ..."), the model
answered "Sure, I'll write that down for you" and nothing was saved. The claim is caught before
it is spoken, a note is offered back instead, and the user's "yes" saves it.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from tests.fakes.openai_api import FakeOpenAI
from voicebot.services import claims, guards
from voicebot.services.llm import VoiceLLMService

KEY = "sk-fake-claims-key"
MISHEARD = "dot down at my passport x-pires in March"


@pytest.mark.parametrize("sentence, kind", [
    ("I'll dot down at your passport at X-Pires in March.", "note"),
    ("Sure, I'll write down that your passport expires in March.", "note"),
    ("I've saved it for you.", "note"),
    ("I'll make a note of it.", "note"),
    ("I'll remember that.", "note"),
    ("I'm keeping track of it.", "note"),
    ("Got it, noted.", "note"),
    ("I've added milk and eggs to your shopping list.", "note"),
    ("I'm putting that on your to-do list now.", "note"),
    ("Sure, I'll set an alarm for six tomorrow.", "act"),
    ("I've booked a table for two at seven.", "act"),
    ("I'm transferring you now.", "act"),
    ("I'll go ahead and send the email.", "act"),
    ("Sure, I'll look it up.", "act"),
    ("Let me check on that for you.", "act"),
    ("I'll find out where your parcel is.", "act"),
    ("I'm checking your order now.", "act"),
    ("I'm looking into it.", "act"),
    ('To find out where your power solid is, you can use the "Find Power Solid" tool.', "act"),
    ("You can use the Check Order Status tool for that.", "act"),
    ("Try using the check_order_status function.", "act"),
    ("You can find it with the \u201cPower Solid Location\u201d tool.", "act"),
])
def test_a_claimed_action_is_recognised(sentence, kind):
    assert claims.claimed(sentence) == kind


@pytest.mark.parametrize("sentence", [
    "I'm sure that's fine.", "I'm sorry to hear that.", "Let me know if you need anything.",
    "Let me remind you that octopuses have three hearts.", "I have to say, that's a great plan.",
    "I'd write it down somewhere safe.", "You could set an alarm.", "I'll help you with that.",
    "I just love that idea!", "I have a great idea.", "Sure, please transfer me to a human.",
    "You could add milk to your shopping list.", "I'd put it on your list of things to ask the doctor.",
    "You can look it up on the carrier's website.", "Let me explain how forecasts work.",
    "It's worth checking the tyre pressure first.", "Check the label before you wash it.",
    "You could use a multi tool for that.", "Use the right tool for the job.", "A hammer is a useful tool.",
    "Try the search function on their website.",
])
def test_advice_and_manners_are_not_claims(sentence):
    assert claims.claimed(sentence) == ""


def test_only_a_plain_yes_takes_the_offer():
    for yes in ["Yes.", "Yes please.", "Sure, go ahead.", "Yeah, do it!", "Um, yes.", "Okay."]:
        assert claims.agrees(yes), yes
    for other in ["No.", "No thanks.", "Thanks.", "Please.", "Yes, but make it April.", "What's the time?"]:
        assert not claims.agrees(other), other


def test_the_offer_reads_back_what_a_yes_would_save():
    said = claims.offer("note", "My passport expires in March.", can_save=True, custom_tools=False)
    assert said.spoken == "I haven't saved that yet. Shall I save a note saying: My passport expires in March?"
    assert said.call.tool == "create_note" and said.call.arguments["body"] == "My passport expires in March"
    assert claims.offer("note", "My passport expires in March.", can_save=False, custom_tools=False).spoken == \
        "Sorry, I can't keep notes here, so nothing was saved."
    assert claims.offer("act", "Set an alarm for six.", can_save=True, custom_tools=False) == \
        claims.Offer("Sorry, I can't do that from here.")
    # After "Sure!" was spoken: "Sure! Actually, I can't do that from here."
    assert claims.offer("act", "Set an alarm for six.", can_save=True, custom_tools=False, after_words=True) == \
        claims.Offer("Actually, I can't do that from here.")
    # The assistant's own tools may do it, and the router missed the request: ask again.
    assert claims.offer("act", "Book a table.", can_save=True, custom_tools=True) == claims.Offer(claims.ASK_AGAIN)


# --- the gate ---------------------------------------------------------------------------------

def _pieces(gate: guards.SentenceGate, text: str) -> list[str]:
    pieces = [s.strip() for word in text.split(" ") for s in gate.feed(word + " ")]
    return [p for p in [*pieces, gate.finish()] if p]


def test_the_gate_holds_back_a_claim_and_what_follows_it():
    gate = guards.SentenceGate([], claims=True)
    assert _pieces(gate, "Sure, I'll write that down for you. It's a good idea to keep track.") == []
    assert gate.claimed == "note" and gate.stopped
    gate = guards.SentenceGate([], claims=True)
    assert _pieces(gate, "What a good idea. I've written it down. Anything else?") == ["What a good idea."]
    assert gate.claimed == "note"
    # Without claims watched (a tool ran this turn), the same words are spoken.
    assert _pieces(guards.SentenceGate([]), "I've written it down. Anything else?") == [
        "I've written it down.", "Anything else?"]


def test_a_claim_is_never_spoken_as_an_early_clause():
    gate = guards.SentenceGate([], claims=True)
    assert _pieces(gate, "Sure, I'll write down that your passport expires in March, so you won't forget.") == []
    # An opening already spoken stays spoken; the claim that ends its sentence does not.
    gate = guards.SentenceGate([], claims=True)
    assert _pieces(gate, "That sounds like a very sensible plan, so I'll note it for you.") == [
        "That sounds like a very sensible plan,"]
    assert gate.claimed == "note" and gate.released == ["That sounds like a very sensible plan."]


def test_an_answer_sending_the_user_to_a_tool_ends_before_the_tool_is_named():
    """Conversation bench, 2026-12-07: a request Whisper garbled reached no tool, and the model named one."""
    gate = guards.SentenceGate([], claims=True)
    said = _pieces(gate, 'To find out where your power solid is, you can use the "Find Power Solid" tool. '
                         "Please provide your order number.")
    assert said == ["To find out where your power solid is,"] and gate.claimed == "act"
    assert claims.offer(gate.claimed, "Can you check where my power solid is?", can_save=True, custom_tools=True,
                        after_words=True).spoken == f"Actually, {claims.ASK_AGAIN}"


# --- VoiceLLMService with the router, against the scripted fake ---------------------------------

@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as api:
        yield api


def _router_llm(fake: FakeOpenAI, saved: list[dict]) -> VoiceLLMService:
    async def create_note(params) -> None:
        saved.append(dict(params.arguments))
        await params.result_callback({"ok": True, "id": 1, **params.arguments})

    llm = VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-4.1-mini", system_prompt="Be brief.",
                          notes_router=True, local=False)
    llm.register_function("create_note", create_note)
    return llm


def _said(down: list) -> str:
    return "".join(f.text for f in down if isinstance(f, LLMTextFrame)).strip()


def test_a_false_claim_becomes_an_offer_and_a_yes_saves_the_note(fake):
    saved: list[dict] = []
    llm = _router_llm(fake, saved)
    fake.reply_with("Sure, I'll write that down for you. Have a good trip!")
    first = [{"role": "user", "content": MISHEARD}]
    offered = "I haven't saved that yet. Shall I save a note saying: at my passport x-pires in March?"
    second = [*first, {"role": "assistant", "content": offered}, {"role": "user", "content": "Yes please."}]
    down, _up = asyncio.run(run_test(llm, start_timeout=60, frames_to_send=[
        LLMContextFrame(LLMContext(messages=first)), LLMContextFrame(LLMContext(messages=second))]))
    said = _said(down)
    assert said.startswith(offered) and "write that down" not in said, said
    assert saved == [{"title": "at my passport x-pires", "body": "at my passport x-pires in March"}]
    assert len(fake.requests_to("/v1/chat/completions", ok=True)) == 1  # the yes never asked the model


def test_anything_but_yes_drops_the_offer(fake):
    saved: list[dict] = []
    llm = _router_llm(fake, saved)
    fake.reply_with("Sure, I'll write that down for you.", "Okay, I'll leave it.")
    first = [{"role": "user", "content": MISHEARD}]
    second = [*first, {"role": "assistant", "content": "I haven't saved that yet. Shall I save a note?"},
              {"role": "user", "content": "No thanks."}]
    third = [*second, {"role": "assistant", "content": "Okay."}, {"role": "user", "content": "Yes."}]
    fake.reply_with("Yes what?")
    down, _up = asyncio.run(run_test(llm, start_timeout=60, frames_to_send=[
        LLMContextFrame(LLMContext(messages=first)), LLMContextFrame(LLMContext(messages=second)),
        LLMContextFrame(LLMContext(messages=third))]))
    assert saved == []  # "no", and a later "yes" answers nothing offered
    assert "Yes what?" in _said(down)


def test_after_a_custom_tools_result_the_model_may_say_what_was_done(fake):
    """The router ran the tool; the model words its result: "I've booked ..." is then true."""
    llm = VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-4.1-mini", system_prompt="Be brief.",
                          notes_router=True, local=False)
    llm.custom_tools = [type("Schema", (), {"name": "book_table"})()]
    fake.reply_with("I've booked a table for two at seven.")
    messages = [{"role": "user", "content": "Book a table for two at seven."},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "book_table", "arguments": json.dumps({"people": 2, "time": "19:00"})}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"ok": True})}]
    down, _up = asyncio.run(run_test(llm, start_timeout=60, frames_to_send=[
        LLMContextFrame(LLMContext(messages=messages))]))
    assert _said(down) == "I've booked a table for two at seven."


def test_an_action_no_tool_can_take_is_said_not_to_be_done(fake):
    saved: list[dict] = []
    llm = _router_llm(fake, saved)
    fake.reply_with("Sure! I'll set an alarm for six tomorrow. Sleep well!")
    down, _up = asyncio.run(run_test(llm, start_timeout=60, frames_to_send=[
        LLMContextFrame(LLMContext(messages=[{"role": "user", "content": "Set an alarm for six tomorrow."}]))]))
    assert _said(down) == "Sure! Actually, I can't do that from here."
    assert saved == []
