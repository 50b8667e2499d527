"""The notes tool's six operations, on the user's own notes only."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from voicebot import notes

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice-notes", password="x")


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob-notes", password="x")


def test_create_list_read_and_the_latest(alice):
    notes.create_note(alice.pk, "shopping", "buy milk")
    notes.create_note(alice.pk, "", "the dentist is on Tuesday at nine")
    assert [n["title"] for n in notes.list_notes(alice.pk)["notes"]] == ["the dentist is on Tuesday", "shopping"]
    assert notes.read_note(alice.pk, title="Shopping note")["body"] == "buy milk"
    assert notes.read_note(alice.pk, latest=True)["body"] == "the dentist is on Tuesday at nine"
    assert notes.read_note(alice.pk, title="the latest")["title"] == "the dentist is on Tuesday"
    assert notes.read_note(alice.pk, title="dentist")["ok"] is True  # words from the title
    assert notes.read_note(alice.pk, title="holiday") == {"ok": False, "error": "no such note"}


def test_update_adds_to_the_note(alice):
    notes.create_note(alice.pk, "shopping", "buy milk")
    result = notes.update_note(alice.pk, "shopping list", "bread")
    assert result["ok"] and result["body"] == "buy milk\nbread"
    assert notes.update_note(alice.pk, "shopping", "only eggs", append=False)["body"] == "only eggs"
    assert notes.update_note(alice.pk, "shopping", "  ")["ok"] is False


def test_delete_by_title_or_the_latest(alice):
    notes.create_note(alice.pk, "shopping", "buy milk")
    notes.create_note(alice.pk, "gym", "legs day")
    assert notes.delete_note(alice.pk, latest=True)["title"] == "gym"
    assert notes.delete_note(alice.pk, "the shopping note")["title"] == "shopping"
    assert notes.list_notes(alice.pk)["notes"] == []
    assert notes.delete_note(alice.pk, "shopping")["ok"] is False


def test_search_looks_in_titles_and_text(alice):
    notes.create_note(alice.pk, "trip", "passport and tickets")
    notes.create_note(alice.pk, "passport renewal", "")
    notes.create_note(alice.pk, "shopping", "milk")
    found = notes.search_notes(alice.pk, "my passport")
    assert sorted(n["title"] for n in found["notes"]) == ["passport renewal", "trip"]
    assert notes.search_notes(alice.pk, "holiday")["notes"] == []


def test_one_user_never_reaches_anothers_notes(alice, bob):
    notes.create_note(bob.pk, "secret", "bob's plans")
    assert notes.read_note(alice.pk, title="secret")["ok"] is False
    assert notes.read_note(alice.pk, latest=True)["ok"] is False
    assert notes.search_notes(alice.pk, "plans")["notes"] == []
    assert notes.delete_note(alice.pk, "secret")["ok"] is False
    assert notes.update_note(alice.pk, "secret", "mine now")["ok"] is False
    assert notes.read_note(bob.pk, title="secret")["body"] == "bob's plans"


def test_a_note_saved_without_a_title_is_named_and_read_back_as_a_user_can_check_it(alice):
    """The confirmation the user hears says what was saved, not a title cut mid-thought."""
    from voicebot.services.intents import speak_result

    saved = notes.create_note(alice.pk, "", "the plumber is coming on Thursday at 10")
    assert saved["title"] == "the plumber is coming"  # not "...coming on"
    assert speak_result("create_note", saved) == "Done. I saved a note: the plumber is coming on Thursday at 10."
    assert notes.create_note(alice.pk, "", "call the bank to my plumber note")["title"] == "call the bank"
    assert notes.create_note(alice.pk, "", "on")["title"] == "on"  # one word stays, whatever it is
    named = notes.create_note(alice.pk, "shopping", "buy milk")
    assert speak_result("create_note", named) == "Done. I saved your note called shopping: buy milk."
    long = notes.create_note(alice.pk, "packing", " ".join(["socks"] * 30))
    assert speak_result("create_note", long) == "Done. I saved your note called packing."


def test_what_the_user_hears_of_a_read_an_update_and_a_delete(alice):
    from voicebot.services.intents import speak_result

    assert speak_result("read_note", notes.read_note(alice.pk, latest=True)) == "You don't have any notes yet."
    notes.create_note(alice.pk, "", "the plumber is coming on Thursday at 10")
    updated = notes.update_note(alice.pk, "plumber", "call the bank")
    assert speak_result("update_note", updated) == ("Done. Your note called the plumber is coming now says: "
                                                    "the plumber is coming on Thursday at 10. Call the bank.")
    assert speak_result("read_note", notes.read_note(alice.pk, latest=True)).startswith(
        "Your note called the plumber is coming says: the plumber is coming on Thursday at 10. Call the bank")
    assert speak_result("read_note", notes.read_note(alice.pk, title="holiday")) == "Sorry, I couldn't find that note."
    assert speak_result("delete_note", notes.delete_note(alice.pk, latest=True)) == (
        "Done. I deleted your note called the plumber is coming.")
