"""Numbers and times of day said aloud, as a tool gets them (voicebot/services/spoken.py)."""
from __future__ import annotations

import pytest

from voicebot.services.spoken import clock_time, expand_repeats, said_time, spoken_numbers


@pytest.mark.parametrize("said, clock", [
    ("half past seven", "7:30"), ("half seven", "7:30"), ("quarter past 3", "3:15"),
    ("quarter to eight", "7:45"), ("twenty to nine", "8:40"), ("quarter to one", "12:45"),
    ("ten past six in the evening", "6:10 pm"), ("half past seven this evening", "7:30 pm"),
    ("seven thirty", "7:30"), ("seven thirty p.m.", "7:30 pm"), ("nine thirty am", "9:30 am"),
    ("seven oh five", "7:05"), ("nineteen forty five", "19:45"), ("twenty one thirty", "21:30"),
    ("eight o'clock", "8:00"), ("three in the afternoon", "3:00 pm"), ("8 in the morning", "8:00 am"),
    ("around 8 tonight", "8:00 pm"), ("about 6 p.m.", "6:00 pm"),
    # As Whisper writes them.
    ("3 p.m.", "3:00 pm"), ("3pm", "3:00 pm"), ("7.30pm", "7:30 pm"), ("7:30 p.m.", "7:30 pm"), ("at 7:30", "7:30"),
    ("noon", "12:00 pm"), ("midday", "12:00 pm"), ("midnight", "12:00 am"),
])
def test_a_time_said_aloud_is_written_as_a_clock_reads_it(said: str, clock: str) -> None:
    assert clock_time(said) == clock


@pytest.mark.parametrize("said", ["tomorrow", "dinner at 7", "half to seven", "19:30 pm", "whenever suits you", ""])
def test_what_is_no_clock_time_is_not_made_one(said: str) -> None:
    assert clock_time(said) is None


def test_numbers_said_in_words_are_their_digits() -> None:
    assert spoken_numbers("a table for twelve please".split()) == {"12"}
    assert spoken_numbers("a hundred and fifty pounds".split()) == {"150"}
    assert spoken_numbers("four five one two".split()) == {"4", "5", "1", "2"}


@pytest.mark.parametrize("sentence, time", [
    ("There's six of us for tonight at eight.", "8:00 pm"), ("I want to book dinner for 4 at 7 pm.", "7:00 pm"),
    ("Do you have room for two at 6:45?", "6:45"), ("we were hoping to come in around 7.", "7:00"),
    ("a table for four at half past seven this evening", "7:30 pm"), ("book for 3 people at noon", "12:00 pm"),
    # Neither "for 4" (a party size) nor two times, nor a place, is a time.
    ("Just the two of us, please, for lunch tomorrow.", None), ("at 7 or at 8", None),
    ("meet me at the station", None),
])
def test_the_one_time_a_sentence_says_is_found(sentence: str, time: str | None) -> None:
    assert said_time(sentence) == time


def test_digits_said_twice_or_three_times_are_each_digit() -> None:
    assert expand_repeats("0 7 7 double 0, 9 double 0".split()) == ["0", "7", "7", "0,", "0,", "9", "0", "0"]
    assert expand_repeats(["triple", "five"]) == ["five"] * 3
