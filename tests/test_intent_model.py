"""The notes classifier: its sentence encoder, its training, and requests no pattern knows."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from voicebot.services import intent_model, intents
from voicebot.services.embeddings import MiniLM, shared as encoder


def test_the_numpy_encoder_reproduces_the_model_cards_similarities():
    # all-MiniLM-L6-v2's model card (sentence-transformers' quick start) prints these three.
    a, b, c = (encoder().encode(s) for s in
               ("The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."))
    assert float(a @ b) == pytest.approx(0.6660, abs=1e-3)
    assert float(a @ c) == pytest.approx(0.1046, abs=1e-3)
    assert float(b @ c) == pytest.approx(0.1411, abs=1e-3)
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-5)


def test_sessions_encoding_at_once_each_get_their_own_vector():
    texts = [f"Sentence number {i} is about {'cats' if i % 2 else 'the weather'}." for i in range(8)]
    alone = [encoder().encode(t) for t in texts]
    together: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        together[i] = encoder().encode(texts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, vector in enumerate(alone):
        assert np.allclose(together[i], vector, atol=1e-6)


def test_training_embeddings_are_cached_by_content(tmp_path):
    items = json.loads(intent_model.TRAINING.read_text())["items"][:40]
    first = intent_model.IntentModel.train(encoder(), items, cache=tmp_path)
    [cached] = tmp_path.glob("intent-embeddings-*.npy")
    second = intent_model.IntentModel.train(encoder(), items, cache=tmp_path)
    assert second.probabilities("save a note") == pytest.approx(first.probabilities("save a note"))
    edited = [{**items[0], "text": items[0]["text"] + " Thanks."}] + items[1:]
    intent_model.IntentModel.train(encoder(), edited, cache=tmp_path)
    assert len(list(tmp_path.glob("intent-embeddings-*.npy"))) == 2 and cached.exists()


def test_the_training_set_covers_every_tool_and_plenty_of_chat():
    items = json.loads(intent_model.TRAINING.read_text())["items"]
    counts = {tool: sum(1 for i in items if i["tool"] == tool) for tool in
              ("create_note", "list_notes", "read_note", "update_note", "delete_note", "search_notes", None)}
    assert min(v for k, v in counts.items() if k) >= 60 and counts[None] >= 300, counts
    assert len({i["text"].lower() for i in items}) == len(items)


# Phrasings written for this test, in neither the training set nor the benchmark sets
# (bench/tool_requests.json, bench/bench_conversation.py), and matched by no pattern
# (checked below): only the classifier can find them.
UNSEEN_REQUESTS = [
    ("Could you stash away the fact that the gate code is four four seven one?", "create_note"),
    ("I'd like it on record that the boiler was serviced today.", "create_note"),
    ("Give me a rundown of everything I've stored with you.", "list_notes"),
    ("Look through what I've saved for anything on insurance.", "search_notes"),
    ("Scrub the entry about the dentist, I don't need it.", "delete_note"),
]
UNSEEN_CHAT = [
    "What's a good way to store fresh herbs so they last?",
    "Tell me something surprising about jellyfish.",
    "Is it better to record a podcast in the morning or the evening?",
    "How many keys does a piano have?",
    "My sister keeps a diary, should I start one too?",
]


# Misses found while writing the cases above, kept so that a better model shows up here:
# with an unusual verb, create_note and search_notes tie and no tool is called.
KNOWN_MISSES = [pytest.param("Hunt through what I've saved for anything on insurance.", "search_notes",
                             marks=pytest.mark.xfail(strict=True, reason="unusual verb: the classifier is split"))]


@pytest.mark.parametrize("text, tool", UNSEEN_REQUESTS + KNOWN_MISSES)
def test_requests_no_pattern_knows_reach_their_tool(text, tool):
    training = {i["text"].lower() for i in json.loads(intent_model.TRAINING.read_text())["items"]}
    assert text.lower() not in training
    assert intents.by_pattern(text) is None  # else this would test the patterns
    intent = intents.parse(text)
    assert intent is not None and intent.tool == tool, intent_model.shared().probabilities(text)


@pytest.mark.parametrize("text", UNSEEN_CHAT)
def test_chat_with_storage_words_is_left_to_the_model(text):
    assert intents.parse(text) is None, intent_model.shared().probabilities(text)


def test_a_classifier_request_gets_arguments_from_the_sentence():
    create = intents.parse(UNSEEN_REQUESTS[0][0])
    assert create is not None and "gate code" in create.arguments["body"]
    search = intents.parse(UNSEEN_REQUESTS[3][0])
    assert search is not None and "insurance" in search.arguments["query"]
    delete = intents.parse(UNSEEN_REQUESTS[4][0])
    assert delete is not None and "dentist" in delete.arguments["title"] and not delete.arguments["latest"]


def test_a_fresh_encoder_loads_from_the_installed_package():
    assert MiniLM().encode("hello").shape == (384,)
