"""The conversation guards: the history budget, tool results as facts, whole sentences, no repeats.

The pure functions are tested on their own; then VoiceLLMService runs in a Pipecat
pipeline against the local OpenAI fake, scripted to answer the way a small model
broke down (an earlier answer again, an answer cut by the token budget), and the
test reads what would be spoken.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest
from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from tests.fakes.openai_api import FakeOpenAI
from voicebot.services import guards
from voicebot.services.llm import LOOPING, RETRY_HINT, VoiceLLMService

KEY = "sk-fake-guards-key"


def _turns(n: int, words: int = 30) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"role": "user", "content": f"question {i} " + "word " * words})
        out.append({"role": "assistant", "content": f"answer {i} " + "word " * words})
    return out


# --- the history budget ------------------------------------------------------------

def test_the_window_keeps_the_system_prompt_and_the_latest_turns_within_budget():
    messages = [{"role": "system", "content": "Be brief."}, *_turns(40),
                {"role": "user", "content": "the latest question"}]
    kept, start = guards.window(messages, 400)
    assert kept[0] == {"role": "system", "content": "Be brief."}
    assert kept[-1]["content"] == "the latest question"
    assert kept[1]["role"] == "user"  # never starts on an answer or a tool result
    assert sum(guards.tokens(m) for m in kept[1:]) <= 400
    assert start > 0


def test_the_window_stays_put_until_the_budget_is_reached_again():
    """A stable prefix is what lets llama.cpp reuse its prompt cache turn after turn."""
    history = [{"role": "system", "content": "Be brief."}, *_turns(40)]
    _kept, start = guards.window(history + [{"role": "user", "content": "next"}], 400)
    firsts = set()
    for extra in range(1, 4):  # a few more turns: the window's first message does not move
        grown = history + _turns(extra, words=5) + [{"role": "user", "content": "next"}]
        kept, again = guards.window(grown, 400, start)
        firsts.add(again)
        assert sum(guards.tokens(m) for m in kept[1:]) <= 400
    assert firsts == {start}


def test_a_short_history_is_sent_whole():
    messages = [{"role": "system", "content": "Be brief."}, *_turns(2)]
    assert guards.window(messages, 2000) == (messages, 0)


def test_consecutive_messages_of_one_role_are_merged():
    merged = guards.alternate([{"role": "system", "content": "s"}, {"role": "user", "content": "one"},
                               {"role": "user", "content": "two"}, {"role": "assistant", "content": "a"}])
    assert [m["role"] for m in merged] == ["system", "user", "assistant"]
    assert merged[1]["content"] == "one two"


# --- tool results as facts -------------------------------------------------------------

def _exchange(request: str, name: str, args: dict, result: dict, spoken: str, call_id: str) -> list[dict]:
    return [{"role": "user", "content": request},
            {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function",
                                                   "function": {"name": name, "arguments": json.dumps(args)}}]},
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
            {"role": "assistant", "content": spoken}]


def test_tool_exchanges_become_facts_and_leave_the_chat():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello!"},
                *_exchange("What notes do I have?", "list_notes", {},
                           {"ok": True, "notes": [{"id": 1, "title": "1 day"}]}, "You have 1 note: 1 day.", "c1"),
                {"role": "user", "content": "Name a fruit."}]
    out = guards.tool_facts(messages)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "system", "user"]
    assert "You have 1 note" not in json.dumps(out)  # the wording a small model copied
    assert "The user's notes are titled: 1 day." in out[3]["content"]
    assert out[0] == messages[0]  # the system prompt, and so llama.cpp's cached prefix, is unchanged


def test_a_tools_yes_or_no_is_a_word_in_its_facts_and_when_said_plainly():
    """A tool's true or false reaches the model, and the user when its answer is said plainly, as
    "yes" or "no": "transferring: True" was read aloud as it was written."""
    result = {"ok": True, "result": {"transferring": True, "queue_full": False, "wait": "about two minutes"}}
    assert guards.facts_spoken(result) == (
        "Here's what I found: transferring: yes; queue full: no; wait: about two minutes.")
    facts = guards.tool_facts(_exchange("A person, please.", "transfer_to_human", {}, result, "", "c1"))
    assert "said: transferring: yes; queue full: no;" in json.dumps(facts)


def test_a_new_tool_fact_leaves_the_earlier_prompt_as_it_was():
    """llama.cpp reuses the cached prompt up to the first changed token: a fact must not
    change the start of the prompt, or every answer after a tool call re-reads the history."""
    before = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "A pear."}]
    first = guards.tool_facts([*before, {"role": "user", "content": "Another?"}])
    later = guards.tool_facts([*before, *_exchange("List my notes.", "list_notes", {},
                                                   {"ok": True, "notes": [{"id": 1, "title": "plumber"}]},
                                                   "You have 1 note: plumber.", "c1"),
                               {"role": "user", "content": "Another?"}])
    assert later[:len(before)] == first[:len(before)] == before
    assert "plumber" in later[-2]["content"] and later[-1]["content"] == "Another?"


def test_later_turns_only_add_to_the_end_of_the_prompt():
    """Each turn after a tool call re-read the turn before it while the fact moved along
    with the latest user message; in place, the prompt of turn N is a prefix of turn N+1's."""
    history = [{"role": "system", "content": "Be brief."},
               *_exchange("List my notes.", "list_notes", {}, {"ok": True, "notes": [{"id": 1, "title": "plumber"}]},
                          "You have 1 note: plumber.", "c1"),
               {"role": "user", "content": "Name a fruit."}]
    prompts = []
    for answer, question in [("A pear.", "Another?"), ("An apple.", "And a vegetable?"), ("A leek.", "Thanks.")]:
        prompts.append(guards.tool_facts(history))
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
    for earlier, later in zip(prompts, prompts[1:]):
        assert later[:len(earlier)] == earlier
    assert "plumber" in prompts[-1][1]["content"] and prompts[-1][1]["role"] == "system"


# --- the spoken answer -------------------------------------------------------------------

def _speak(gate: guards.SentenceGate, text: str) -> str:
    said = [s for word in text.split(" ") for s in gate.feed(word + " ")]
    return ("".join(said) + gate.finish()).strip()


def test_an_answer_cut_by_the_budget_ends_on_its_last_full_sentence():
    gate = guards.SentenceGate([])
    assert _speak(gate, "Call it Biscuit. It is a fitting name for a puppy that loves") == "Call it Biscuit."
    assert gate.dropped == ["It is a fitting name for a puppy that loves"]


def test_the_spoken_budget_ends_the_answer_on_a_whole_sentence():
    gate = guards.SentenceGate([], budget_tokens=10)  # about 35 characters
    assert _speak(gate, "It is sunny today. Take a hat with you. And some water.") == "It is sunny today."
    assert gate.full and not gate.dropped  # complete, not cut: nothing held back
    # A first sentence is spoken whole even when it alone is over the budget.
    assert _speak(guards.SentenceGate([], budget_tokens=3), "It is sunny today. Go out.") == "It is sunny today."


def test_a_lone_fragment_is_still_spoken_as_a_sentence():
    assert _speak(guards.SentenceGate([]), "Biscuit, Pepper or Maple,") == "Biscuit, Pepper or Maple."


def test_an_answer_given_before_is_caught():
    with pytest.raises(guards.RepeatedAnswer):
        _speak(guards.SentenceGate(["You have 1: 1 day."]), "You have 1: 1 day. Anything else?")
    # Asked again and still repeating: the repeat is dropped, the rest is spoken.
    gate = guards.SentenceGate(["You have 1: 1 day."], strict=False)
    assert _speak(gate, "You have 1: 1 day. Paris is the capital of France.") == "Paris is the capital of France."


def test_an_answer_that_says_the_users_earlier_words_back_is_caught():
    """After a tool's facts the small model answered with the user's first words of the call
    ("The lobe girl, I have a few questions today.", conversation bench, 2026-12-06)."""
    history = [{"role": "user", "content": "Hello Pearl, I have a few questions today."},
               {"role": "assistant", "content": "Sure, go ahead and ask!"},
               {"role": "user", "content": "My dog is called Rex"},
               {"role": "assistant", "content": "What a lovely name."},
               {"role": "user", "content": "What is my dog called?"}]
    heard = guards.earlier_words(history)
    assert heard == ["Hello Pearl, I have a few questions today.", "My dog is called Rex"]
    with pytest.raises(guards.RepeatedAnswer):  # nothing said first: not even its opening clause
        _pieces(guards.SentenceGate([], heard_before=heard), "Hello Pearl, I have a few questions today.")
    with pytest.raises(guards.RepeatedAnswer):  # the user's words without their full stop
        _speak(guards.SentenceGate([], heard_before=heard), "My dog is called Rex.")
    # Only the very words: an answer built on them is an answer.
    assert _speak(guards.SentenceGate([], heard_before=heard), "Your dog is called Rex.") == "Your dog is called Rex."
    # The latest message is not among them: an answer may begin by restating the question.
    assert _speak(guards.SentenceGate([], heard_before=heard), "What is my dog called? Rex.") == (
        "What is my dog called? Rex.")


def test_an_answer_to_a_tool_that_nearly_copies_the_users_earlier_words_is_caught():
    """"The lobe girl has a few questions today." for an order's status (conversation bench, 2026-12-07):
    the user's first words with one changed. In the answer to a custom tool's result (`heard_alike`), a
    near copy counts; in a chat turn only the very words do."""
    heard = ["The lobe girl, I have a few questions today.", "Can you check where my parcel is?"]
    with pytest.raises(guards.RepeatedAnswer):
        _speak(guards.SentenceGate([], heard_before=heard, heard_alike=True),
               "The lobe girl has a few questions today.")
    assert _speak(guards.SentenceGate([], heard_before=heard), "The lobe girl has a few questions today.") == (
        "The lobe girl has a few questions today.")
    answer = "Your order 4512 was shipped on Tuesday and arrives on Friday."
    assert _speak(guards.SentenceGate([], heard_before=heard, heard_alike=True), answer) == answer


def test_a_loop_inside_an_answer_stops_it():
    gate = guards.SentenceGate([])
    text = "I like to go for a walk. I like to go for a walk. I like to go for a walk."
    assert _speak(gate, text) == "I like to go for a walk."
    assert gate.looping


def test_short_replies_may_repeat():
    assert _speak(guards.SentenceGate(["Sure."]), "Sure. Here it is.") == "Sure. Here it is."


def _pieces(gate: guards.SentenceGate, text: str) -> list[str]:
    """What the gate hands to the voice, piece by piece, as the model writes word by word."""
    pieces = [s.strip() for word in text.split(" ") for s in gate.feed(word + " ")]
    return [*pieces, *([tail] if (tail := gate.finish()) else [])]


def test_an_answer_starts_at_its_first_clause_not_its_first_full_stop():
    """The voice waited for the model's whole first sentence (~1 s of a 1.5B model on 2 cores)."""
    gate = guards.SentenceGate([])
    text = "The capital of Germany is Berlin, a city of almost four million people. It lies on the Spree."
    assert _pieces(gate, text) == ["The capital of Germany is Berlin,", "a city of almost four million people.",
                                   "It lies on the Spree."]
    # What was said is kept as sentences, so a later loop or repeat is still caught.
    assert gate.released[0] == "The capital of Germany is Berlin, a city of almost four million people."


def test_only_a_clause_worth_a_breath_is_spoken_early():
    assert _pieces(guards.SentenceGate([]), "Sure, I can help with that.") == ["Sure, I can help with that."]
    assert _pieces(guards.SentenceGate([]), "It costs 1,000 dollars in total today.") == [
        "It costs 1,000 dollars in total today."]
    # Only the first sentence: later ones are written while the first is heard.
    assert _pieces(guards.SentenceGate([]), "Yes. Take a coat, a hat and some gloves with you.") == [
        "Yes.", "Take a coat, a hat and some gloves with you."]


def test_a_long_first_sentence_starts_at_a_conjunction_where_a_speaker_would_breathe():
    """An advice answer's first sentence often has no comma ("Try setting specific goals and
    breaking them down into smaller tasks."): ~12 tokens at ~12 tokens/s before a word was said."""
    gate = guards.SentenceGate([])
    assert _pieces(gate, "Try setting specific goals and breaking them down into smaller tasks. Take breaks too.") == [
        "Try setting specific goals", "and breaking them down into smaller tasks.", "Take breaks too."]
    assert gate.released[0] == "Try setting specific goals and breaking them down into smaller tasks."
    assert _pieces(guards.SentenceGate([]), "Try eating a light meal before you go to bed.") == [
        "Try eating a light meal", "before you go to bed."]
    # The sentence's end written before the word after the conjunction: nothing to start early.
    assert _pieces(guards.SentenceGate([]), "Try eating a light meal before bed.") == [
        "Try eating a light meal before bed."]
    # Not where the conjunction joins a number, or for "or" (a choice, "more or less"), or too soon.
    for whole in ("It takes about two and a half hours by train.", "It takes about 2 and a half hours.",
                  "You can have eggs with toast or yogurt for breakfast.", "Yes and no, it depends.",
                  "The Andes and the Alps are both mountain ranges."):
        assert _pieces(guards.SentenceGate([]), whole) == [whole]
    # A word that only begins like one is no conjunction.
    assert _pieces(guards.SentenceGate([]), "You could ask your friend Andrew to help.") == [
        "You could ask your friend Andrew to help."]


def test_an_opening_that_began_an_earlier_answer_waits_for_the_repeat_check():
    with pytest.raises(guards.RepeatedAnswer):
        _pieces(guards.SentenceGate(["You have one note, called shopping."]),
                "You have one note, called shopping. Anything else?")


def test_a_first_sentence_cut_by_the_token_limit_after_its_opening_still_ends():
    """Once its opening is spoken, a first sentence is finished whatever happens: stopping there
    would leave the user on a comma."""
    gate = guards.SentenceGate([])
    assert _pieces(gate, "Call your puppy Biscuit, a fitting name for a dog that loves") == [
        "Call your puppy Biscuit,", "a fitting name for a dog that loves."]
    # A model that stops right on the comma ends a fragment, spoken whole with a full stop.
    assert _pieces(guards.SentenceGate([]), "Biscuit, Pepper or Maple,") == ["Biscuit, Pepper or Maple."]


def test_the_offline_voice_speaks_each_piece_as_it_comes():
    """Pipecat's sentence aggregator in front of hibari would hold the opening back until the
    sentence's full stop: the TTS must synthesize the pieces the gate hands it, as they come."""
    import threading

    import numpy as np
    from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame

    from voicebot.services.tts import HibariTTSService

    class Engine:  # hibari's interface: stream(text) yields float32 audio chunks
        said: list[str] = []

        def stream(self, text: str, speed: float = 1.0):
            self.said.append(text)
            yield np.full(2400, 0.2, dtype=np.float32)

    engine = Engine()
    tts = HibariTTSService(engine, lock=threading.Lock(), sample_rate=24000)
    asyncio.run(run_test(tts, frames_to_send=[
        LLMFullResponseStartFrame(), LLMTextFrame("The capital of Germany is Berlin, "),
        LLMTextFrame("a city of almost four million people. "), LLMFullResponseEndFrame()], start_timeout=60))
    assert [t.strip() for t in engine.said] == ["The capital of Germany is Berlin,",
                                                "a city of almost four million people."]


def test_an_opening_spoken_on_its_own_pauses_about_as_long_as_inside_its_whole_sentence():
    """hibari ends every piece with ~0.45 s of silence; after an opening the rest of the sentence
    follows, so that pause is cut to about hibari's own within the sentence (0.28-0.39 s)."""
    import numpy as np

    from voicebot.services.guards import ends_sentence
    from voicebot.services.tts import PAUSE_AFTER_OPENING_MS, load_hibari, trim_silence

    engine, rate = load_hibari()

    def silence_after(audio: np.ndarray) -> float:
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        return (len(audio) - 1 - loud[-1]) / rate

    opening = trim_silence(np.concatenate(list(engine.stream("Try setting clear goals"))), rate)
    assert silence_after(opening) > 0.38  # hibari's own
    trimmed = trim_silence(opening, rate, keep_after_ms=PAUSE_AFTER_OPENING_MS)
    assert 0.29 <= silence_after(trimmed) <= 0.31 and np.array_equal(trimmed, opening[:len(trimmed)])
    assert ends_sentence("and breaking tasks into smaller steps.") and ends_sentence('He said "yes."')
    assert not ends_sentence("The capital of Germany is Berlin,") and not ends_sentence("Try setting clear goals")


# --- VoiceLLMService in a pipeline, against the scripted fake ---------------------------------

@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as api:
        yield api


def _llm(fake: FakeOpenAI, **kwargs) -> VoiceLLMService:
    return VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-4.1-mini", system_prompt="Be brief.",
                           notes_router=False, **kwargs)


def _spoken(llm: VoiceLLMService, messages: list[dict]) -> str:
    context = LLMContext(messages=messages)
    down, _up = asyncio.run(run_test(llm, frames_to_send=[LLMContextFrame(context)], start_timeout=60))
    return "".join(f.text for f in down if isinstance(f, LLMTextFrame)).strip()


def test_the_service_asks_again_when_the_model_repeats_an_earlier_answer(fake):
    fake.reply_with("You have 1: 1 day. Is there more?", "The Nile is the longest river in Africa.")
    history = [{"role": "user", "content": "What notes do I have?"},
               {"role": "assistant", "content": "You have 1: 1 day."},
               {"role": "user", "content": "Which river is the longest in Africa?"}]
    assert _spoken(_llm(fake), history) == "The Nile is the longest river in Africa."
    first, second = (r.json for r in fake.requests_to("/v1/chat/completions", ok=True))
    assert RETRY_HINT not in json.dumps(first["messages"])
    assert second["temperature"] == 0.7
    # The hint follows the user's words: everything before them is the first request's, token for token,
    # so llama.cpp's prompt cache serves it (in the system prompt, a retry re-read the whole history).
    assert second["messages"][:-1] == first["messages"]
    assert second["messages"][-1] == {"role": "system", "content": RETRY_HINT}


def test_an_answer_spoken_in_pieces_goes_back_to_the_model_as_it_wrote_it(fake):
    """Pipecat joins the pieces the offline voice spoke with a space of its own after the gate's:
    "Berlin,  a city". Sent so, the answer's tokens differ from those the model generated, and
    llama.cpp's prompt cache stopped at the gap (a DEBUG run: 5-15 tokens re-read every turn)."""
    fake.reply_with("Munich is in Bavaria.")
    spoken = guards.SentenceGate([]).feed("The capital of Germany is Berlin, a city of four million people. It lies on the Spree. ")
    stored = "  ".join(piece.strip() for piece in spoken)  # what the context holds after the TTS
    assert "  " in stored
    history = [{"role": "user", "content": "Tell me about Berlin."}, {"role": "assistant", "content": stored},
               {"role": "user", "content": "And Munich?"}]
    assert _spoken(_llm(fake), history) == "Munich is in Bavaria."
    sent = next(iter(fake.requests_to("/v1/chat/completions", ok=True))).json["messages"]
    assert sent[-2]["content"] == ("The capital of Germany is Berlin, a city of four million people. "
                                   "It lies on the Spree.")


def test_the_same_question_asked_again_may_get_the_same_answer(fake):
    """The guard took a repeated right answer to a repeated question for a loop, and the answer it
    forced out at temperature 0.7 put Paris "in southern France near the Atlantic"."""
    fake.reply_with("The capital city of France is Paris.")
    history = [{"role": "user", "content": "What is the capital city of the country of France?"},
               {"role": "assistant", "content": "The capital city of France is Paris."},
               {"role": "user", "content": "what is the capital city of the country of France"}]
    assert _spoken(_llm(fake), history) == "The capital city of France is Paris."
    assert len(fake.requests_to("/v1/chat/completions", ok=True)) == 1  # not asked again
    assert guards.earlier_answers(history) == []
    other = [*history[:2], {"role": "user", "content": "Which river runs through the capital of France?"}]
    assert guards.earlier_answers(other) == ["The capital city of France is Paris."]


def test_the_service_asks_again_when_the_model_says_the_users_earlier_words(fake):
    fake.reply_with("Hello Pearl, I have a few questions today.", "Mercury is the closest planet to the Sun.")
    history = [{"role": "user", "content": "Hello Pearl, I have a few questions today."},
               {"role": "assistant", "content": "Sure, go ahead and ask!"},
               {"role": "user", "content": "Which planet is closest to the Sun?"}]
    assert _spoken(_llm(fake), history) == "Mercury is the closest planet to the Sun."
    assert len(fake.requests_to("/v1/chat/completions", ok=True)) == 2


@pytest.mark.parametrize("fumbled", ["Hello Pearl, I have a few questions today.",
                                     "Hello Pearl has a few questions today."])
def test_a_custom_tools_answer_the_model_fumbles_is_said_as_it_came(fake, fumbled):
    """Asked again (hotter, with the hint), the small model made a tool's answer up ("arriving
    Thursday or Wednesday" from "arriving Friday"): the tool's own words are said instead, after the
    user's earlier words as they were and after a near copy of them."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    fake.reply_with(fumbled, "It arrives Thursday or Wednesday.")
    llm = _llm(fake)
    llm.custom_tools = [FunctionSchema(name="check_order_status", description="An order's status.",
                                       properties={"order_number": {"type": "string"}}, required=["order_number"])]
    call = {"id": "call_1", "type": "function",
            "function": {"name": "check_order_status", "arguments": json.dumps({"order_number": "7781"})}}
    history = [{"role": "user", "content": "Hello Pearl, I have a few questions today."},
               {"role": "assistant", "content": "Sure, go ahead and ask!"},
               {"role": "user", "content": "Where is my order 7781?"},
               {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1",
                "content": json.dumps({"ok": True, "result": {"status": "shipped on Tuesday, arriving Friday"}})}]
    assert _spoken(llm, history) == "Here's what I found: status: shipped on Tuesday, arriving Friday."
    assert len(fake.requests_to("/v1/chat/completions", ok=True)) == 1  # not asked again


def test_the_service_drops_a_second_repeat_and_says_so(fake):
    fake.reply_with("You have 1: 1 day.", "You have 1: 1 day.")
    history = [{"role": "user", "content": "Notes?"}, {"role": "assistant", "content": "You have 1: 1 day."},
               {"role": "user", "content": "Tell me a joke."}]
    assert _spoken(_llm(fake), history) == LOOPING


def test_the_service_speaks_only_whole_sentences(fake):
    fake.reply_with("Call it Biscuit. It is a fitting name for a puppy that loves")
    assert _spoken(_llm(fake), [{"role": "user", "content": "Name my puppy."}]) == "Call it Biscuit."


def test_the_service_sends_only_the_window(fake):
    fake.reply_with("Fine.")
    _spoken(_llm(fake, history_tokens=300), [*_turns(30), {"role": "user", "content": "And now?"}])
    (request,) = fake.requests_to("/v1/chat/completions", ok=True)
    sent = request.json["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1] == {"role": "user", "content": "And now?"}
    assert sum(guards.tokens(m) for m in sent[1:]) <= 300 and len(sent) < 20


# --- the token budgets: a spoken answer's and a tool call's -------------------------------

LONG_NOTE = {"title": "shopping", "body": "Buy two loaves of wholemeal bread, a dozen free-range eggs, "
             "oat milk, three ripe avocados, a bag of basmati rice, washing-up liquid and some fresh basil "
             "for the pasta on Friday, and remember to pick up the parcel from the post office."}


def _run(llm: VoiceLLMService, messages: list[dict], tools: list | None = None) -> tuple[list, list]:
    from voicebot.tools import TOOLS

    context = LLMContext(messages=messages, tools=TOOLS if tools is None else tools)
    return asyncio.run(run_test(llm, frames_to_send=[LLMContextFrame(context)], start_timeout=60))


def test_a_note_longer_than_the_spoken_budget_still_reaches_the_tool(fake):
    """A tool call's arguments get their own budget: with one cap of 30 tokens the note's JSON was
    cut and Pipecat dropped the call with a log line (no note, no reply, no voice.error)."""
    saved: list[dict] = []

    async def create_note(params) -> None:
        saved.append(params.arguments)
        await params.result_callback({"ok": True, "id": 1, "title": params.arguments["title"]})

    llm = _llm(fake, reply_tokens=30)
    llm.register_function("create_note", create_note)
    fake.call_tool_next("create_note", LONG_NOTE)
    _run(llm, [{"role": "user", "content": "Put my shopping list in a note."}])
    assert saved == [LONG_NOTE]
    (request,) = fake.requests_to("/v1/chat/completions", ok=True)
    assert request.json["max_completion_tokens"] == 400 and "max_tokens" not in request.json


def test_a_tool_call_cut_by_the_token_limit_is_reported_not_lost(fake):
    from pipecat.frames.frames import ErrorFrame

    from voicebot.provider_errors import describe

    llm = _llm(fake, reply_tokens=20, tool_tokens=20)
    llm.register_function("create_note", lambda params: pytest.fail("a cut call must not run"))
    fake.call_tool_next("create_note", LONG_NOTE)
    _down, up = _run(llm, [{"role": "user", "content": "Put my shopping list in a note."}])
    (error,) = [f for f in up if isinstance(f, ErrorFrame)]
    told = describe(error)
    assert (told.code, told.stage, told.fatal) == ("llm_tool_call_cut", "llm", False)
    assert "nothing was done" in told.message


def test_a_long_answer_ends_on_its_last_sentence_within_the_spoken_budget(fake):
    fake.reply_with("Paris is the capital of France. It lies on the Seine. It has about two million people. "
                    "Its best known landmark is the Eiffel Tower, built for the fair of 1889.")
    spoken = _spoken(_llm(fake, reply_tokens=20), [{"role": "user", "content": "Tell me about Paris."}])
    assert spoken == "Paris is the capital of France. It lies on the Seine."  # 20 tokens: about 70 characters


def test_every_tool_call_of_a_delta_is_run(fake):
    """Pipecat read only a delta's first tool call: "save these two notes" saved one."""
    saved: list[str] = []

    async def create_note(params) -> None:
        saved.append(params.arguments["title"])
        await params.result_callback({"ok": True, "title": params.arguments["title"]})

    llm = _llm(fake)
    llm.register_function("create_note", create_note)
    fake.call_tools_in_one_delta_next(("create_note", {"title": "milk", "body": "buy milk"}),
                                      ("create_note", {"title": "call", "body": "call mum"}))
    _run(llm, [{"role": "user", "content": "Save two notes: buy milk, and call mum."}])
    assert saved == ["milk", "call"]


def test_the_notes_router_leaves_notes_requests_alone_when_the_assistant_has_no_notes_tools(fake):
    """An assistant with its notes tools turned off: on the offline model a notes request is chat."""
    asked: list[str] = []

    async def list_notes(params) -> None:
        asked.append("list_notes")
        await params.result_callback({"ok": True, "notes": []})

    with_notes = _llm(fake, local=False)
    with_notes.notes_router = True
    with_notes.register_function("list_notes", list_notes)
    _run(with_notes, [{"role": "user", "content": "What notes do I have?"}], tools=[])
    assert asked == ["list_notes"]
    without = _llm(fake, local=False)
    without.notes_router = True
    down, _up = _run(without, [{"role": "user", "content": "What notes do I have?"}], tools=[])
    assert asked == ["list_notes"]  # not called again: the model answered instead
    assert "".join(f.text for f in down if isinstance(f, LLMTextFrame)).startswith("You said: What notes")


def test_a_server_that_refuses_tools_falls_back_to_the_notes_router():
    """Ollama answers 400 "<model> does not support tools" for a model without tool support: every
    turn failed. The session now goes on without tools, notes requests through the router."""
    from pipecat.frames.frames import ErrorFrame

    with FakeOpenAI(api_key=KEY, refuse_tools=True) as ollama:
        def llm() -> VoiceLLMService:
            return VoiceLLMService(base_url=ollama.url, api_key=KEY, model="gemma2:2b", system_prompt="Be brief.",
                                   notes_router=False)

        asked: list[str] = []

        async def list_notes(params) -> None:
            asked.append(params.function_name)
            await params.result_callback({"ok": True, "notes": []})

        notes = llm()
        notes.register_function("list_notes", list_notes)
        _down, up = _run(notes, [{"role": "user", "content": "What notes do I have?"}])
        assert asked == ["list_notes"] and notes.notes_router is True
        assert not [f for f in up if isinstance(f, ErrorFrame)]  # the refusal cost the user nothing

        down, up = _run(llm(), [{"role": "user", "content": "Tell me a joke."}])
        assert "".join(f.text for f in down if isinstance(f, LLMTextFrame)).startswith("You said: Tell me a joke.")
        assert not [f for f in up if isinstance(f, ErrorFrame)]
        refused, answered = ollama.requests_to("/v1/chat/completions")[-2:]
        assert "tools" in refused.json and refused.status == 400
        assert "tools" not in answered.json and answered.status == 200


def test_a_reasoning_model_is_sent_max_completion_tokens(fake):
    """OpenAI's reasoning models refuse max_tokens (400 unsupported_parameter)."""
    fake.reply_with("Two plus three is five.")
    llm = VoiceLLMService(base_url=fake.url, api_key=KEY, model="o3-mini", system_prompt="Be brief.",
                          notes_router=False)
    assert _spoken(llm, [{"role": "user", "content": "What is two plus three?"}]) == "Two plus three is five."
    assert not fake.requests_to("/v1/chat/completions", ok=False)


def test_a_reasoning_model_gets_room_to_reason_before_its_spoken_answer(fake):
    """A reasoning model's thinking counts against max_completion_tokens (OpenAI's reasoning guide): with a
    voice answer's cap alone it is used up before the first word, and the user hears nothing."""
    from voicebot.services.llm import reasoning_options

    question = [{"role": "user", "content": "What is two plus three?"}]
    fake.reply_with("Two plus three is five.")
    cramped = VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-5-mini", system_prompt="Be brief.",
                              notes_router=True, local=False)
    assert _spoken(cramped, question) == ""  # what a session without the room said
    assert reasoning_options("gpt-4.1-mini") == {} and reasoning_options("gpt-5-chat-latest") == {}
    fake.reply_with("Two plus three is five.")
    llm = VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-5-mini", system_prompt="Be brief.",
                          notes_router=True, local=False, **reasoning_options("gpt-5-mini"))
    assert _spoken(llm, question) == "Two plus three is five."
    sent = fake.requests_to("/v1/chat/completions")[-1].json
    assert sent["reasoning_effort"] == "low" and sent["max_completion_tokens"] == 100 + 1024
    assert not fake.requests_to("/v1/chat/completions", ok=False)


def test_the_fake_reasons_as_openai_documents_it():
    """The reasoning the test above leans on: counted in the cap and reported; efforts each model takes."""
    import openai

    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI(api_key="sk-test-reasoning") as api:
        client = openai.OpenAI(api_key="sk-test-reasoning", base_url=api.url, max_retries=0)
        ask = [{"role": "user", "content": "hi"}]
        cut = client.chat.completions.create(model="o3-mini", messages=ask, max_completion_tokens=80)
        assert cut.choices[0].message.content == "" and cut.choices[0].finish_reason == "length"
        assert cut.usage.completion_tokens_details.reasoning_tokens == 80
        low = client.chat.completions.create(model="o3-mini", messages=ask, max_completion_tokens=80,
                                             reasoning_effort="low")
        assert low.choices[0].message.content and low.usage.completion_tokens_details.reasoning_tokens == 64
        for model, effort, words in [("gpt-4.1-mini", "low", "not supported with this model"),
                                     ("gpt-5-mini", "none", "does not support 'none'"),
                                     ("gpt-5.1", "minimal", "does not support 'minimal'")]:
            with pytest.raises(openai.BadRequestError, match=words):
                client.chat.completions.create(model=model, messages=ask, reasoning_effort=effort)


# --- the real offline model ---------------------------------------------------------------

QUESTIONS = ["What is the capital of France?", "Can you suggest a name for my puppy?",
             "How many legs does a spider have?", "What should I cook for dinner tonight?",
             "Is it going to be hard to learn the piano?", "What colour is the sky on a clear day?",
             "Tell me something about the moon.", "How do I keep my plants alive?",
             "What is two plus three?", "Thanks. Remind me, what was the title of my note?",
             "Give me a tip for sleeping better.", "What do bees make?"]


@pytest.fixture(scope="module")
def local_server():
    from voicebot.services.llm import start_local_server

    server, url = start_local_server(parallel=1)
    yield url
    del server


def test_an_answer_to_a_tools_facts_cannot_begin_with_yes(local_server):
    """"Will it be cold in Oslo tomorrow?" with "mild, 14 degrees" was answered "Yes, it will be cold":
    the small model commits at its first word. Told to begin with "Yes", it does in a chat turn; in a
    turn answering a custom tool's facts it cannot, and says the fact."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    def pearl() -> VoiceLLMService:
        llm = VoiceLLMService(base_url=local_server, api_key="local", model="local", notes_router=True,
                              system_prompt="Your name is Pearl. Begin every answer with the word Yes.")
        llm.custom_tools = [FunctionSchema(name="get_weather", description="The weather forecast for a city.",
                                           properties={"city": {"type": "string"}}, required=["city"])]
        return llm

    chat = _spoken(pearl(), [{"role": "user", "content": "Is the sky blue on a clear day?"}])
    assert chat.startswith("Yes"), chat
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    answer = _spoken(pearl(), [{"role": "user", "content": "Will it be cold in Oslo tomorrow?"},
                               {"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "tool_call_id": "call_1",
                                "content": json.dumps({"ok": True, "result": {"forecast": "mild, 14 degrees"}})}])
    assert answer and not answer.startswith(("Yes", "No")), answer


def test_the_offline_model_holds_a_conversation_after_a_tool_call(local_server):
    """The breakdown users heard: after a notes answer, every later answer copied it; and
    simple facts were wrong. The default model answers them, and recalls the tool's result."""
    def pearl() -> VoiceLLMService:  # a processor lives in one event loop: one per turn here
        return VoiceLLMService(base_url=local_server, api_key="local", model="local",
                               system_prompt="Your name is Pearl. You are a helpful voice assistant. Your words "
                                             "are spoken aloud, so answer in one or two short, plain sentences.",
                               notes_router=True)

    history: list[dict] = [*_exchange("What notes do I have?", "list_notes", {},
                                      {"ok": True, "notes": [{"id": 1, "title": "1 day"}]},
                                      "You have 1 note: 1 day.", "call_1")]
    answers = []
    for question in QUESTIONS:
        history.append({"role": "user", "content": question})
        answer = _spoken(pearl(), list(history))
        answers.append(answer)
        history.append({"role": "assistant", "content": answer})
    said = dict(zip(QUESTIONS, (a.lower() for a in answers)))
    assert "paris" in said["What is the capital of France?"], answers
    assert re.search(r"\b(eight|8)\b", said["How many legs does a spider have?"]), answers
    assert re.search(r"\b(five|5)\b", said["What is two plus three?"]), answers
    assert "honey" in said["What do bees make?"], answers
    assert "1 day" in said["Thanks. Remind me, what was the title of my note?"], answers  # the tool's fact, recalled
    assert all(a and a[-1] in ".!?\"')" for a in answers), answers
    normalised = [guards._norm(a) for a in answers]
    assert len(set(normalised)) == len(normalised), answers
    assert not any("you have 1" in n for n in normalised[:-3]), answers  # not copying the tool's line


def test_after_a_notes_answer_the_next_turn_reads_only_the_new_question(local_server, caplog):
    """The router's notes exchange (request, facts, spoken result) is read into llama.cpp's cache
    while the result is spoken; it used to be read at the next turn, 30-40 more prompt tokens on
    6 of 14 answers of a bench conversation. Measured by llama.cpp's own count of cached tokens."""
    import logging

    llm = VoiceLLMService(base_url=local_server, api_key="local", model="local",
                          system_prompt="Your name is Pearl. You are a helpful voice assistant.", notes_router=True)
    notes = {"ok": True, "notes": [{"id": n, "title": t} for n, t in enumerate(
        ["plumber on Thursday at ten", "shopping: eggs, bread and milk", "passport expires in March",
         "call the bank about the mortgage"], 1)]}
    exchange = _exchange("What notes do I have?", "list_notes", {}, notes, "", "call_1")[:3]
    first = LLMContext(messages=[{"role": "user", "content": "Hello Pearl."},
                                 {"role": "assistant", "content": "Hello! How can I help you today?"}, *exchange])
    from voicebot.services.intents import speak_result

    said = speak_result("list_notes", notes)
    second = LLMContext(messages=[*first.get_messages(), {"role": "assistant", "content": said},
                                  {"role": "user", "content": "What is the capital of France?"}])
    caplog.set_level(logging.DEBUG, logger="voicebot.llm")
    down, _up = asyncio.run(run_test(llm, frames_to_send=[LLMContextFrame(first), LLMContextFrame(second)],
                                     start_timeout=60))
    text = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
    assert said in text and "paris" in text.lower(), text
    usage = [tuple(map(int, m)) for m in re.findall(r"llm tokens: prompt=(\d+) cached=(\d+)", caplog.text)]
    assert usage, caplog.text
    prompt, cached = usage[-1]
    assert prompt - cached <= 25, usage  # the question and the template's markers, not the notes exchange


ORDER_TOOL = {"name": "check_order_status", "description": "Look up an order's delivery status by its number.",
              "properties": {"order_number": {"type": "string"}}, "required": ["order_number"]}


def _order_call(number: str, status: str, call_id: str) -> list[dict]:
    call = {"id": call_id, "type": "function",
            "function": {"name": "check_order_status", "arguments": json.dumps({"order_number": number})}}
    return [{"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"ok": True, "result": {"status": status}})}]


def test_a_custom_tools_facts_are_read_up_to_its_answer_while_it_runs(local_server, caplog):
    """The answer to a custom tool read ~50 new prompt tokens (its facts) after the tool came back: ~1 s
    at this machine's prompt speed. Its facts up to the tool's own words are known when the call is made
    (`guards.facts_ahead`) and read while the tool runs; the answer then reads the rest. Measured by
    llama.cpp's own count of cached tokens, against the same answer without the read."""
    import logging

    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    def pearl(tools: bool = True) -> VoiceLLMService:  # without tools, the request is answered, not routed
        llm = VoiceLLMService(base_url=local_server, api_key="local", model="local", notes_router=True,
                              system_prompt="Your name is Pearl. You are a helpful voice assistant.")
        llm.custom_tools = [FunctionSchema(**ORDER_TOOL)] if tools else []
        return llm

    asked = [{"role": "user", "content": "Hello Pearl."},
             {"role": "assistant", "content": "Hello! How can I help you today?"},
             {"role": "user", "content": "Where is my order? The number is 4512."}]
    caplog.set_level(logging.DEBUG, logger="voicebot.llm")

    def new_tokens(read_ahead: bool, number: str) -> int:
        request = [*asked[:2], {**asked[2], "content": asked[2]["content"].replace("4512", number)}]
        _spoken(pearl(tools=False), request)  # the cache as the turn leaves it: the conversation, the request
        if read_ahead:
            asyncio.run(pearl()._read(guards.facts_ahead(request, "check_order_status", {"order_number": number})))
        caplog.clear()
        answer = _spoken(pearl(), [*request, *_order_call(number, "shipped on Tuesday, arriving Friday", "c1")])
        assert "friday" in answer.lower(), answer
        usage = [tuple(map(int, m)) for m in re.findall(r"llm tokens: prompt=(\d+) cached=(\d+)", caplog.text)]
        assert len(usage) == 1, caplog.text
        return usage[0][0] - usage[0][1]

    without, ahead = new_tokens(False, "4512"), new_tokens(True, "7781")
    assert ahead <= without - 15, (without, ahead)


def test_after_a_custom_tools_answer_the_next_turn_reads_only_the_users_words(local_server, caplog):
    """The next turn's prompt keeps only a tool exchange's facts (no request, no answer), so it differs
    from the answer's from the request on. Once the answer is given, the conversation as the next turn
    will send it is read (`_read_after_answer`), and the next turn reads only the user's words."""
    import logging

    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    def pearl(reads: list | None = None) -> VoiceLLMService:
        llm = VoiceLLMService(base_url=local_server, api_key="local", model="local", notes_router=True, local=True,
                              system_prompt="Your name is Pearl. You are a helpful voice assistant.")
        llm.custom_tools = [FunctionSchema(**ORDER_TOOL)]
        if reads is not None:
            llm._read_ahead = lambda messages, **kwargs: reads.append(messages)  # type: ignore[method-assign]
        return llm

    caplog.set_level(logging.DEBUG, logger="voicebot.llm")

    def next_turn_new_tokens(number: str, *, read_after: bool) -> int:
        exchange = [{"role": "user", "content": "Hello Pearl."},
                    {"role": "assistant", "content": "Hello! How can I help you today?"},
                    {"role": "user", "content": f"Where is my order? The number is {number}."},
                    *_order_call(number, "shipped on Tuesday, arriving Friday", f"c{number}")]
        reads: list = []
        answer = _spoken(pearl(reads), exchange)
        assert "friday" in answer.lower() and len(reads) == 1, (answer, reads)
        if read_after:
            asyncio.run(pearl()._read(reads[0]))
        caplog.clear()
        llm = pearl()
        llm.custom_tools = []  # the next sentence is chat: no tool check in the one slot between
        _spoken(llm, [*exchange, {"role": "assistant", "content": answer},
                      {"role": "user", "content": "Thank you, that is all for today."}])
        usage = [tuple(map(int, m)) for m in re.findall(r"llm tokens: prompt=(\d+) cached=(\d+)", caplog.text)]
        assert len(usage) == 1, caplog.text
        return usage[0][0] - usage[0][1]

    # Order numbers no other test asks about: llama.cpp's host-memory cache keeps every prompt the
    # module's server read, and another test's exchange with the same number would be found there.
    without, after = next_turn_new_tokens("6150", read_after=False), next_turn_new_tokens("8823", read_after=True)
    assert after <= without - 15, (without, after)


def test_the_offline_models_check_asks_the_arguments_only_of_a_request(local_server, monkeypatch):
    """A custom tool check on the real model: a request is asked for its verdict, then for its arguments
    after the opening the grammar forces (read with the prompt, not decoded token by token); a sentence
    that is no request costs the verdict alone. The call is the one the user asked for."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    from voicebot.services import llm as llm_module
    from voicebot.services.tool_router import ANSWER_START, CustomToolRouter

    # The live bound (15 s) is for a user waiting; a busy test machine may read the check's prompt slower.
    monkeypatch.setattr(llm_module, "CHECK_TIMEOUT", 120.0)

    llm = VoiceLLMService(base_url=local_server, api_key="local", model="local", notes_router=True,
                          system_prompt="Be brief.")
    router = CustomToolRouter([FunctionSchema(**ORDER_TOOL)])
    card = router.cards[0]
    asked: list[list[dict]] = []
    checked = llm._checked

    async def recorded(card, request):
        asked.append(request["messages"])
        return await checked(card, request)

    llm._checked = recorded  # type: ignore[method-assign]

    async def both() -> tuple:
        try:
            request = await router.check(card, "Has order 3309 been shipped yet?", llm._check_tool)
            asked_for_it = list(asked)
            asked.clear()
            return request, asked_for_it, await router.check(card, "Tell me a joke about penguins.", llm._check_tool)
        finally:
            # Its connection closed in its own loop: llama.cpp's server, stopping at the module's end,
            # waits for every open one.
            await llm._client.close()

    call, asked_for_it, joke = asyncio.run(both())
    assert call is not None and call.arguments == {"order_number": "3309"} and not call.missing, call
    assert [m[-1]["content"] for m in asked_for_it] == [ANSWER_START, ANSWER_START + card.arguments_opening()]
    assert joke is None and len(asked) == 1


@pytest.fixture(scope="module")
def two_slot_server():
    """The offline model with two slots, as a worker's server has several: a check can go to another."""
    from voicebot.services.llm import start_local_server

    server, url = start_local_server(parallel=2)
    yield url
    del server


def test_a_withdrawn_turns_check_finishes_and_the_next_check_of_the_tool_finds_its_prompt(two_slot_server,
                                                                                            monkeypatch, caplog):
    """The user paused, the answer begun ahead checked the tool, and the user went on: that turn is
    withdrawn while llama.cpp reads its check. Cancelled, llama.cpp went on reading it for a while, and
    the next turn's check of the same tool, sent at once, found that slot busy and read the tool's whole
    prompt again in another (3.5 s against 0.2 s on 2 cores). Now the withdrawn check finishes first."""
    import logging

    import httpx
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    from voicebot.services import llm as llm_module
    from voicebot.services.tool_router import CustomToolRouter

    monkeypatch.setattr(llm_module, "CHECK_TIMEOUT", 120.0)  # a busy test machine reads prompts slower
    caplog.set_level(logging.DEBUG, logger="voicebot.llm")
    llm = VoiceLLMService(base_url=two_slot_server, api_key="local", model="local", notes_router=True,
                          system_prompt="Be brief.")
    router = CustomToolRouter([FunctionSchema(**ORDER_TOOL)])
    card = router.cards[0]
    slots = two_slot_server.removesuffix("/v1") + "/slots"

    async def reading() -> None:
        """Until llama.cpp is at work on a request (bounded)."""
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(1000):
                if any(slot["is_processing"] for slot in (await client.get(slots)).json()):
                    return
                await asyncio.sleep(0.01)
        raise AssertionError("llama.cpp never began the check")

    async def turns() -> object:
        try:
            await router.check(card, "Is order 3309 on its way?", llm._check_tool)  # the tool's prompt is read
            caplog.clear()
            withdrawn = asyncio.create_task(router.check(card, "Has order 3309 been shipped", llm._check_tool))
            await reading()
            withdrawn.cancel()
            await asyncio.gather(withdrawn, return_exceptions=True)
            return await router.check(card, "Has order 3309 been shipped yet?", llm._check_tool)
        finally:
            await llm._client.close()

    call = asyncio.run(turns())
    assert call is not None and call.arguments == {"order_number": "3309"}
    checks = [tuple(map(int, m)) for m in re.findall(r"tool check check_order_status: \d+ ms, prompt=(\d+) cached=(\d+)",
                                                     caplog.text)]
    # The withdrawn turn's verdict, then the next turn's verdict and arguments, each reading only the user's words.
    assert all(cached >= prompt - 25 for prompt, cached in checks), checks
    assert len(checks) == 3, caplog.text


def test_a_custom_tool_call_reads_its_facts_ahead_and_a_notes_call_does_not(monkeypatch):
    """The read is made when the router calls a custom tool on the local model: not for a notes tool (its
    result is spoken from a template), nor in a speculative run (its calls are withdrawn)."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    llm = VoiceLLMService(base_url="http://127.0.0.1:9/v1", api_key="local", model="local", notes_router=True,
                          system_prompt="Be brief.")
    llm.custom_tools = [FunctionSchema(**ORDER_TOOL)]
    read: list[list[dict]] = []

    async def made(calls):
        return None

    monkeypatch.setattr(llm, "run_function_calls", made)
    monkeypatch.setattr(llm, "_read_ahead", read.append)
    context = LLMContext(messages=[{"role": "user", "content": "Where is order 4512?"}])
    asyncio.run(llm._call(context, "check_order_status", {"order_number": "4512"}))
    assert read and read[0][-1]["content"].endswith("The check order status tool for order number 4512 said:")
    asyncio.run(llm._call(context, "list_notes", {}))
    assert len(read) == 1
    from types import SimpleNamespace

    monkeypatch.setattr(llm, "_speculation_gate", SimpleNamespace(is_speculating=True), raising=False)
    asyncio.run(llm._call(context, "check_order_status", {"order_number": "4513"}))
    assert len(read) == 1


def _turn_tokens(local_server: str, caplog, *, prefill: bool) -> tuple[int, int]:
    """One spoken turn after a short conversation: llama.cpp's prompt and cached token counts.
    With `prefill`, the interim transcripts pass UserWordsPrefill on their way, as in the pipeline."""
    import logging

    from pipecat.frames.frames import InterimTranscriptionFrame, UserStartedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline

    from voicebot.prefill import UserWordsPrefill

    def pearl() -> VoiceLLMService:  # a processor lives in one event loop: one per run here
        return VoiceLLMService(base_url=local_server, api_key="local", model="local",
                               system_prompt="Your name is Pearl. You are a helpful voice assistant.", notes_router=True)

    history = [{"role": "user", "content": "Hello Pearl."},
               {"role": "assistant", "content": "Hello! How can I help you today?"}]
    # The cache as an earlier turn leaves it: this conversation, then another question.
    asyncio.run(run_test(pearl(), start_timeout=60, frames_to_send=[
        LLMContextFrame(LLMContext(messages=[*history, {"role": "user", "content": "Hi."}]))]))
    llm = pearl()
    question = "Could you please tell me what the capital city of France is?"
    stages = [UserWordsPrefill(llm, LLMContext(messages=list(history))), llm] if prefill else [llm]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="voicebot.llm")
    down, _up = asyncio.run(run_test(Pipeline(stages), start_timeout=60, frames_to_send=[
        UserStartedSpeakingFrame(),
        *(InterimTranscriptionFrame(text, "user", "2026-12-05T00:00:00Z")
          for text in ("Could you please tell me what the", "Could you please tell me what the capital city")),
        LLMContextFrame(LLMContext(messages=[*history, {"role": "user", "content": question}]))]))
    assert "paris" in "".join(f.text for f in down if isinstance(f, LLMTextFrame)).lower()
    usage = [tuple(map(int, m)) for m in re.findall(r"llm tokens: prompt=(\d+) cached=(\d+)", caplog.text)]
    assert len(usage) == 1, caplog.text
    if prefill:
        # The read ahead read only the user's words, without the chat template's end of the message
        # ("Could you please tell me what": 6 tokens; a second interim came while it read).
        reads = [int(n) for n in re.findall(r"read ahead: \d+ ms, prompt=\d+ new=(\d+) \(open-ended\)", caplog.text)]
        assert reads and reads[0] <= 6, caplog.text
    return usage[-1]


def test_the_users_words_are_read_while_they_speak_and_the_turn_reads_only_the_last_ones(local_server, caplog):
    """A turn's request read the user's whole question and the template's markers (~19 tokens:
    0.7 s to the first token on 2 idle cores). Read from the interim transcripts while the user
    spoke, what is left is the words after the last interim's and the markers."""
    prompt, cached = _turn_tokens(local_server, caplog, prefill=False)
    unread = prompt - cached
    prompt, cached = _turn_tokens(local_server, caplog, prefill=True)
    assert prompt - cached <= unread - 5, (prompt - cached, unread)  # "Could you please tell me what the" read ahead
