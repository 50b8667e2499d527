"""The offline path's notes router, scored on the request set written without looking at it.

These are floors at the measured figures (bench/bench_tools.py; docs/llm-models.md), so a
change to the patterns, the classifier or its training set cannot lose recall or add false
calls unnoticed. Recall meets the goal (90%); false calls (4 of 84) do not yet (goal: none).
Two more sets were written blind on 2026-12-04 (bench/tool_requests_2.json, _3.json); the
third, written after the hard negatives of that day were added to training, is the fair one.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_tools import score  # noqa: E402

from voicebot.services.intents import parse  # noqa: E402
from voicebot.services import intents  # noqa: E402
from voicebot.services.intents import parse as intents_parse  # noqa: E402


def test_the_router_keeps_its_measured_recall_and_false_calls():
    result = score(json.loads((ROOT / "bench" / "tool_requests.json").read_text())["items"])
    assert result["positives"] >= 130 and result["negatives"] >= 70
    assert result["recall"] >= 0.97, result["misses"]
    assert result["args_right"] >= 0.96, result["misses"]  # 89.4% before updates took "note: ..." and "note, ..."
    assert result["false_calls"] == 0, result["false"]


@pytest.mark.parametrize("name, recall, args_right, false_calls", [
    ("tool_requests_2.json", 0.99, 0.98, 0),  # its false calls were read before the hard negatives
    ("tool_requests_3.json", 1.0, 0.93, 1),  # blind to all of it: 88.3% and 6 false calls before
    ("tool_requests_4.json", 0.98, 0.96, 0),  # blind until 2026-12-05: 93.3%, 90.0%, 1 false call
    ("tool_requests_5.json", 0.98, 0.96, 0),  # blind until 2026-12-05 (later): 88.3%, 75.0%, 2 false calls
])
def test_the_router_keeps_its_figures_on_the_later_sets(name, recall, args_right, false_calls):
    result = score(json.loads((ROOT / "bench" / name).read_text())["items"])
    assert result["positives"] >= 60 and result["negatives"] >= 70
    assert result["recall"] >= recall, result["misses"]
    assert result["args_right"] >= args_right, result["misses"]
    assert result["false_calls"] <= false_calls, result["false"]


@pytest.mark.parametrize("text, tool, args", [
    ("Take a note called shopping saying buy milk", "create_note", {"title": "shopping", "body": "buy milk"}),
    ("Don't let me forget to call mom.", "create_note", {"title": "call mom", "body": "call mom"}),
    ("Read my last note.", "read_note", {"title": "", "latest": True}),
    ("What does my shopping note say?", "read_note", {"title": "shopping", "latest": False}),
    ("Add bread to my shopping list.", "update_note", {"title": "shopping", "latest": False, "body": "bread"}),
    ("Get rid of that note.", "delete_note", {"title": "", "latest": True}),
    ("Search my notes for passport.", "search_notes", {"query": "passport"}),
    ("What notes do I have?", "list_notes", {}),
    # "write it down" with the note after it (2026-12-06: answered as chat, the model listing the items)
    ("Write it down: milk, eggs, bread.", "create_note", {"title": "milk, eggs, bread", "body": "milk, eggs, bread"}),
    ("Could you write that down for me: gate code 4471.", "create_note",
     {"title": "gate code 4471", "body": "gate code 4471"}),
    # Whisper tiny's hearing of "Add call the bank to my plumber note." in the conversation bench:
    # "add" as "and", "note" as "node". It used to be answered as chat, and nothing was added.
    ("and call the bank to my Plumber node", "update_note", {"title": "Plumber", "latest": False,
                                                              "body": "call the bank"}),
    ("Read my plumber node.", "read_note", {"title": "plumber", "latest": False}),
    # ...and "Put milk on my shopping list." as "But milk on my shopping list." (2026-12-05).
    ("But milk on my shopping list.", "update_note", {"title": "shopping", "latest": False, "body": "milk"}),
    # What to put in a note, after a colon or comma or "to include" (these updated it with nothing).
    ("Please update the recipe note: use brown sugar instead.", "update_note",
     {"title": "recipe", "latest": False, "body": "use brown sugar instead"}),
    ("Change the book club note, the next book is Circe.", "update_note",
     {"title": "book club", "latest": False, "body": "the next book is Circe"}),
    ("Update the packing note to include a hat.", "update_note", {"title": "packing", "latest": False, "body": "a hat"}),
    # An update that names its note before what to add (the blind fourth set's misses).
    ("can you add to my last note that the meeting moved to 3pm", "update_note",
     {"title": "", "latest": True, "body": "the meeting moved to 3pm"}),
    ("In the gift ideas note, put down a scarf for Mum.", "update_note",
     {"title": "gift ideas", "latest": False, "body": "a scarf for Mum"}),
    # The blind fifth set's misses, in new words.
    # A title at the end of the request runs to the end of its clause, not one word.
    ("Scrap the note called old phone numbers, please.", "delete_note", {"title": "old phone numbers", "latest": False}),
    ("Delete my note about the school fete.", "delete_note", {"title": "school fete", "latest": False}),
    ("Wipe the note with the bin days in it.", "delete_note", {"title": "bin days", "latest": False}),
    ("Ditch my note titled scratch.", "delete_note", {"title": "scratch", "latest": False}),
    # "most recent" is which note, not its title; what to add can follow in its own sentence.
    ("In my most recent note, also add that the taxi is booked.", "update_note",
     {"title": "", "latest": True, "body": "the taxi is booked"}),
    ("Could you update the quiz note? The answer was Canberra.", "update_note",
     {"title": "quiz", "latest": False, "body": "The answer was Canberra"}),
    ("Add a line to the camping note saying take the tarp.", "update_note",
     {"title": "camping", "latest": False, "body": "take the tarp"}),
    ("Edit the holiday note and include the ferry times.", "update_note",
     {"title": "holiday", "latest": False, "body": "the ferry times"}),
    ("For the note I just made, add that it starts at noon.", "update_note",
     {"title": "", "latest": True, "body": "it starts at noon"}),
    ("Stick it in my notes that the car needs an MOT.", "create_note",
     {"title": "the car needs an MOT", "body": "the car needs an MOT"}),
    ("Remind me what I wrote in my allotment note.", "read_note", {"title": "allotment", "latest": False}),
    ("What did I put in the note about the loft?", "read_note", {"title": "loft", "latest": False}),
    ("Let's hear the recipe note.", "read_note", {"title": "recipe", "latest": False}),
    ("Which of my notes talk about the pension?", "search_notes", {"query": "the pension"}),
    ("Find the note that mentions the alarm code.", "search_notes", {"query": "the alarm code"}),
    ("Did I write down anything about the landlord?", "search_notes", {"query": "the landlord"}),
    ("Where did I write down the locker number?", "search_notes", {"query": "locker number"}),
    # A search that names nothing to look for: the router asks what (test_router_asks_what_to_search_for).
    ("Search my notes.", "search_notes", {"query": ""}),
    ("Could you search my notes?", "search_notes", {"query": ""}),
    # A misheard "jot" left to the classifier: the note is what follows "that".
    ("Dot down that my library books are due Friday.", "create_note",
     {"title": "my library books are due", "body": "my library books are due Friday"}),
])
def test_requests_of_each_kind(text, tool, args):
    intent = parse(text)
    assert intent is not None and (intent.tool, intent.arguments) == (tool, args)


@pytest.mark.parametrize("text", ["Take a note called browser saying it works",
                                  "Delete my dentist note.", "Read my last note."])
def test_a_request_that_names_a_note_is_never_overruled(text):
    """The classifier may drop only an ambiguous rule's call ("remind me how tides work")."""
    from voicebot.services import intent_model

    intent = intents_parse(text)
    assert intent is not None and not intent.overrulable, intent_model.shared().probabilities(text)


def test_remind_me_to_do_anything_is_a_note_even_where_the_classifier_hears_chat():
    """Whisper heard "water" as "wander" (conversation bench, 2026-12-05): the classifier took
    "Remind me to wander the plants tomorrow." for chat and the bot promised a reminder it
    never saved. "Remind me to ..." now stands; "remind me how/what ..." is still the model's."""
    from voicebot.services import intent_model

    text = "Remind me to wander the plants tomorrow."
    probabilities = intent_model.shared().probabilities(text)
    assert intents.decide(text, {**probabilities, intents.CHAT: 1.0}) == intents.Intent(
        "create_note", {"title": "wander the plants tomorrow", "body": "wander the plants tomorrow"}, False)
    assert intents_parse("Don't let me forget to pay the rent.").arguments["body"] == "pay the rent"
    assert intents_parse("remind me how compound interest works") is None
    assert intents_parse("Remind me what to do next") is None


@pytest.mark.parametrize("text", ["What note is middle C?", "Make a list of three fruits.", "Write me a poem.",
                                  "Can you remember things?", "What is the latest news?", "Add two and three.",
                                  "My lymph node is swollen.", "How do I install node on my laptop?",
                                  # the false calls of the first three sets (2026-12-05)
                                  "What does take note mean?", "I just saved fifty dollars on groceries!",
                                  "Tell me about the history of the Post-it note.",
                                  "I'm trying to save up for a new bike by the summer.",
                                  "can you add up 45, 17 and 8 for me?",
                                  # the false calls of the blind fifth set, in new words
                                  "I left myself a note on the fridge and now it's gone.",
                                  "On that note, I'm off to bed.", "What a lovely note to end on.",
                                  "Which notes are in a G chord?",
                                  # the last false call of set 3, in new words
                                  "My to-do list is as long as my arm this week.",
                                  "Honestly, the list of chores is a mile long.",
                                  # a spoken conversation's closing, saved as a note "is all" (2026-12-06),
                                  # and its kin: the assistant's name alone is not a request
                                  "Thanks Pearl, that is all!", "Thank Pearl, that is all!",
                                  "Thanks, that is all!", "Thanks Pearl, that will be all."])
def test_chat_is_left_to_the_model(text):
    assert parse(text) is None


def test_a_sentence_the_classifier_is_sure_is_not_chat_goes_to_its_likeliest_tool():
    """"Okay so the dentist note, bin that one." split the classifier between deleting (0.49) and
    reading, with chat at 0.00: under the 0.5 bar, so the request was lost. Sure it is no chat, the
    likeliest tool is called (cross-validated on the training set: recall up, no false call more)."""
    sure = {intents.CHAT: 0.01, "delete_note": 0.49, "read_note": 0.3, "create_note": 0.2}
    assert intents.decide("the dentist note, bin that one.", sure).tool == "delete_note"
    unsure = {**sure, intents.CHAT: 0.2, "create_note": 0.01}
    assert intents.decide("the dentist note, bin that one.", unsure) is None


@pytest.mark.parametrize("answer, query", [("For mother.", "mother"), ("Anything about the dentist.", "the dentist"),
                                           ("Passport, please.", "Passport"), ("Never mind.", ""),
                                           ("No thanks.", ""), ("", ""), ("What's the weather like?", ""),
                                           ("Tell me a joke", ""), ("Check my order 4512", ""),
                                           ("I need a plumber", ""),
                                           ("I was wondering if you could help me plan a trip", "")])
def test_the_answer_to_what_to_search_for(answer, query):
    assert intents.search_query(answer) == query


def test_a_search_for_a_number_alone_names_something_to_look_for():
    """The classifier's path (a request no pattern knows) took a query of digits for no query at all."""
    for said in ("Search my notes for 4512.", "Look through my notes for 2024."):
        assert intents.arguments_from_shape("search_notes", said).arguments["query"] != "", said
    assert intents.arguments_from_shape("search_notes", "Search my notes.").arguments == {"query": ""}


def test_the_router_asks_what_to_search_for_and_searches_the_answer():
    """Conversation bench, 2026-12-08: "Search my notes for mother." reached the bot as two
    utterances; the first searched for its own words ("None of your notes mention Search my notes.")."""
    import asyncio

    from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.tests.utils import run_test

    from tests.fakes.openai_api import FakeOpenAI
    from voicebot.services.llm import VoiceLLMService

    searched: list[dict] = []

    async def search_notes(params) -> None:
        searched.append(dict(params.arguments))
        await params.result_callback({"ok": True, "query": params.arguments["query"], "notes": []})

    with FakeOpenAI(api_key="sk-fake-search-key") as fake:
        fake.reply_with("Okay.")
        llm = VoiceLLMService(base_url=fake.url, api_key="sk-fake-search-key", model="gpt-4.1-mini",
                              system_prompt="Be brief.", notes_router=True, local=False)
        llm.register_function("search_notes", search_notes)
        asked = [{"role": "user", "content": "Search my notes."}]
        answered = [*asked, {"role": "assistant", "content": intents.SEARCH_QUESTION},
                    {"role": "user", "content": "For mother."}]
        again = [{"role": "user", "content": "Search my notes."}]
        dropped = [*again, {"role": "assistant", "content": intents.SEARCH_QUESTION},
                   {"role": "user", "content": "Never mind."}]
        down, _up = asyncio.run(run_test(llm, start_timeout=60, frames_to_send=[
            LLMContextFrame(LLMContext(messages=m)) for m in (asked, answered, again, dropped)]))
        said = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
        assert said.count(intents.SEARCH_QUESTION) == 2, said
        assert searched == [{"query": "mother"}]  # the answer searched; "Never mind." did not
        assert "Okay." in said  # "Never mind." went to the model
        assert len(fake.requests_to("/v1/chat/completions", ok=True)) == 1
