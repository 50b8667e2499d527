"""Numbers and times of day said aloud, as a tool wants them written: "a hundred and fifty" is
150, "half past seven in the evening" is 7:30 pm.

By hand: no installed package reads number words (num2words, here as a Pipecat dependency,
writes them), and dateparser, the well-kept parser of written dates, reads "7:30 p.m." but
not "half past seven", "quarter to eight" or "seven thirty": the words Whisper writes.
"""
from __future__ import annotations

import re

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1000000}
DIGIT_WORDS = {**{w: str(i) for w, i in _UNITS.items() if i < 10}, "oh": "0"}  # "four five one two" -> 4512
NUMBER_WORDS = {*_UNITS, *_TENS, *_SCALES, "and", "a"}


# The words an argument can take digits from: a number's ("four five one two", "J D zero one"), and a
# named time's (a clock's 12:00).
_DIGIT_GIVING = NUMBER_WORDS - {"and", "a"} | {"oh", "noon", "midday", "midnight"}


def may_say_a_number(sentence: str) -> bool:
    """Whether `sentence` could give an argument digits: it has a digit, a number's word ("four five
    one two", "J D zero one") or a named time ("noon", a clock's 12:00). Without any, no argument the
    model copies from it holds a digit (tool_router.heard, as_identifier, as_time)."""
    if any(c.isdigit() for c in sentence):
        return True
    words = set(re.findall(r"[a-z]+", sentence.lower()))
    return not words.isdisjoint(_DIGIT_GIVING)


def spoken_numbers(words: list[str]) -> set[str]:
    """The numbers said in words ("twelve", "a hundred and fifty", "two thousand"), as digits."""
    found: set[str] = set()
    total = current = 0
    inside = False
    for i, word in enumerate([*words, ""]):
        if word in _UNITS and inside and current % 10 and _UNITS[word] < 10:
            found.add(str(total + current))  # "four five": digits one by one, not 4 + 5
            total, current = 0, _UNITS[word]
        elif word in _UNITS or word in _TENS:
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
            inside = True
        elif word in _SCALES and (inside or (i > 0 and words[i - 1] == "a")):
            if _SCALES[word] == 100:
                current = max(current, 1) * 100
            else:
                total, current = total + max(current, 1) * _SCALES[word], 0
            inside = True
        elif word == "and" and inside:
            continue
        else:
            if inside:
                found.add(str(total + current))
            total = current = 0
            inside = False
    return found


_REPEATS = {"double": 2, "triple": 3}


def expand_repeats(words: list[str]) -> list[str]:
    """Digits said the British way, "double 0" and "triple five", as each digit: ["0", "0"]."""
    out: list[str] = []
    times = 1
    for word in words:
        if word.lower().strip(",.") in _REPEATS:
            times = _REPEATS[word.lower().strip(",.")]
            continue
        out += [word] * times
        times = 1
    return out


def _small(words: list[str]) -> int | None:
    """A number from 0 to 59 said in one or two words ("seven", "forty five", "45"), else None."""
    if len(words) == 1 and words[0].isdigit():
        return int(words[0])
    if len(words) == 1 and words[0] in _UNITS:
        return _UNITS[words[0]]
    if len(words) == 1 and words[0] in _TENS:
        return _TENS[words[0]]
    if len(words) == 2 and words[0] in _TENS and words[1] in _UNITS and 0 < _UNITS[words[1]] < 10:
        return _TENS[words[0]] + _UNITS[words[1]]
    return None


_MERIDIEM = re.compile(r"(?<![a-z])([ap])\.?\s?m\b\.?")  # "pm", "p.m.", "7.30pm"
_CLOCK_WORD = re.compile(r"\d{1,2}[:.]\d{2}")  # "7:30", "7.30"
_PARTS_OF_DAY = {"morning": "am", "afternoon": "pm", "evening": "pm", "night": "pm", "tonight": "pm"}
_NAMED = {"noon": (12, 0, "pm"), "midday": (12, 0, "pm"), "midnight": (12, 0, "am")}
_FILLER = {"at", "about", "around", "in", "the", "oclock", "o'clock", "minutes", "minute", "sharp", "ish", "say"}


def _clock_words(text: str) -> list[str]:
    """`text` as the words a clock time is read from: lower case, "p.m." as "pm", "7:30" one word."""
    text = _MERIDIEM.sub(lambda m: f" {m.group(1)}m ", text.lower())
    return re.findall(r"\d{1,2}[:.]\d{2}|[a-z']+|\d+", text.replace("-", " "))


def _minutes_and_hour(words: list[str]) -> tuple[int, int] | None:
    """(hour, minute) of the clock's words without the part of the day, or None."""
    for link, sign in (("past", 1), ("after", 1), ("to", -1), ("before", -1), ("till", -1), ("of", -1)):
        if link in words[1:-1]:
            i = words.index(link)
            said, hour = words[:i], _small(words[i + 1:])
            minutes = {"half": 30, "quarter": 15, "a quarter": 15}.get(" ".join(said), _small(said))
            if minutes is None or hour is None or not 1 <= hour <= 24 or not 0 < minutes < 60 or (
                    sign < 0 and minutes == 30):
                return None
            return (hour, minutes) if sign > 0 else ((hour - 2) % 12 + 1 if hour <= 12 else hour - 1, 60 - minutes)
    if len(words) >= 2 and words[0] == "half":  # British "half seven": 7:30
        hour = _small(words[1:])
        return (hour, 30) if hour is not None and 1 <= hour <= 12 else None
    for cut in range(1, min(len(words), 2) + 1):  # "seven", "seven thirty", "seven oh five", "nineteen forty five"
        hour, rest = _small(words[:cut]), words[cut:]
        if hour is None or not 0 <= hour <= 23:
            continue
        if not rest:
            return hour, 0
        if rest[0] == "oh" and len(rest) == 2 and rest[1] in _UNITS and _UNITS[rest[1]] < 10:
            return hour, _UNITS[rest[1]]
        minutes = _small(rest)
        if minutes is not None and 10 <= minutes < 60:
            return hour, minutes
    return None


def clock_time(said: str) -> str | None:
    """A time of day said aloud as a clock reads it, or None when `said` is not one.

    "half past seven" -> "7:30", "quarter to eight in the evening" -> "7:45 pm", "3 p.m." ->
    "3:00 pm", "noon" -> "12:00 pm", "19:30" -> "19:30". Said without a part of the day it stays
    without one: "seven thirty" may be either, and the tool or the user knows which.
    """
    words = _clock_words(said)
    meridiem = next((w for w in words if w in ("am", "pm")), None)
    meridiem = meridiem or next((_PARTS_OF_DAY[w] for w in words if w in _PARTS_OF_DAY), None)
    words = [w for w in words if w not in _FILLER and w not in _PARTS_OF_DAY and w not in ("am", "pm", "this")]
    if len(words) == 1 and words[0] in _NAMED:
        hour, minutes, meridiem = _NAMED[words[0]]
    elif len(words) == 1 and _CLOCK_WORD.fullmatch(words[0]):
        hour, minutes = (int(n) for n in re.split(r"[:.]", words[0]))
    elif words:
        found = _minutes_and_hour(words)
        if found is None:
            return None
        hour, minutes = found
    else:
        return None
    if not (0 <= hour <= 23 and 0 <= minutes < 60) or (meridiem and not 1 <= hour <= 12):
        return None
    return f"{hour}:{minutes:02d}" + (f" {meridiem}" if meridiem else "")


_LEADS = ("at", "around", "about", "by")  # "for" leads a party size ("a table for 4"), not a time
_OPENS = ("half", "quarter", "noon", "midday", "midnight")
_LONGEST = 5  # words in the longest clock phrase ("quarter to eight in the evening" without its fillers)


def said_time(sentence: str) -> str | None:
    """The one time of day `sentence` says ("a table for four at eight tonight" -> "8:00 pm"), or None
    when it says none or more than one. A time follows "at", "around", "about" or "by", or is one by its
    form ("8:30", "7 pm", "half past"); a part of the day said anywhere in the sentence ("tonight at
    eight") gives a time said without one its am or pm."""
    words = _clock_words(sentence)
    found: set[str] = set()
    for i, word in enumerate(words):
        if word in _LEADS:
            start = i + 1
        elif word in _OPENS or _CLOCK_WORD.fullmatch(word) or (word.isdigit() and words[i + 1:i + 2] in (["am"], ["pm"])):
            start = i
        else:
            continue
        spans = [clock_time(" ".join(words[start:end])) for end in range(start + 1, min(start + _LONGEST, len(words)) + 1)]
        longest = next((t for t in reversed(spans) if t), None)
        if longest:
            found.add(longest)
    if len(found) != 1:
        return None
    time = found.pop()
    part = next((_PARTS_OF_DAY[w] for w in words if w in _PARTS_OF_DAY), None)
    if part and " " not in time and 1 <= int(time.split(":")[0]) <= 12:
        time = f"{time} {part}"
    return time
