"""What keeps a spoken conversation sane, whatever the model: plain functions and one class,
used by VoiceLLMService.

- `window`: the system prompt plus the latest turns within a token budget. It moves
  in steps (down to half the budget each time), so the prompt's prefix stays the
  same for many turns and llama.cpp's prompt cache keeps answering fast.
- `tool_facts`: a small model copies the wording of earlier tool results ("You have
  1 note: ...") into every later answer. For such models the tool exchanges leave the
  chat history and come back as facts in the system prompt.
- `SentenceGate`: an answer is spoken sentence by sentence; a sentence the assistant
  already said is caught (the model is looping), and what is left unfinished when the
  token budget runs out is not spoken. An answer's first words go out at its first
  clause break, so the voice starts before the model has written a whole sentence.
  With the router, a sentence claiming an action no tool took ends the answer
  unspoken (claims.py).
"""
from __future__ import annotations

import difflib
import json
import re
from typing import Any, Iterable

from .claims import claimed
from .spoken import NUMBER_WORDS

# A rough token count: no tokenizer is at hand for a hosted model, and the budget only
# needs to be right within a few percent. English runs close to 4 characters a token;
# 3.5 errs towards keeping less.
CHARS_PER_TOKEN = 3.5
MIN_WORDS_TO_COMPARE = 4  # "Sure." or "Done." may be said twice; longer sentences not
SIMILAR = 0.9  # difflib ratio above which two sentences count as the same

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
# Where a first sentence may be cut to start speaking early: a comma, semicolon, colon or
# dash followed by a space (so "1,000" and "3:30" stay whole), or the space before a
# conjunction, where a speaker may take a breath too ("Try setting specific goals | and
# breaking them down into smaller tasks."): a fifth of the conversation bench's chat answers
# had one 3-13 words before their first comma or full stop, at ~12 tokens/s a second's wait.
# The conjunction is a whole word only once the word after it has begun. Not "or" and "so"
# ("two or three", "more or less", "not so bad"), nor "and" after a number ("two and a half").
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|\s+(?:-|\u2013|\u2014)\s+|\s+(?P<conjunction>)(?=(?:and|but|because|which|while|"
                         r"when|where|if|until|before|after|since|though|although)\s+\S)")
CLAUSE_MIN_WORDS = 4  # "Sure," and "Well, yes," are not worth a breath of their own
_WORD = re.compile(r"[a-z0-9']+")
_SPACES = re.compile(r"[ \t]{2,}")


# --- the history budget ---------------------------------------------------------------

def _text(message: dict[str, Any]) -> str:
    """A chat message's text: its content, or the text of its content parts."""
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def tokens(message: dict[str, Any]) -> int:
    """Estimated tokens of one chat message (its text, tool calls included)."""
    size = len(_text(message)) + len(json.dumps(message.get("tool_calls") or ""))
    return int(size / CHARS_PER_TOKEN) + 4  # + the chat template's per-message markers


def window(messages: list[dict[str, Any]], budget: int, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The leading system messages plus the latest turns that fit in `budget` tokens.

    `start` is where the previous window began (an index into the turns after the
    system messages); the window only moves forward, and when it must move it drops
    turns until what is left fits in half the budget, so the prefix the model sees
    stays put for the next several turns. A window always begins at a user message,
    so a tool result never loses the call it answers. Returns (messages, start).
    """
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    system, turns = messages[:head], messages[head:]
    start = min(start, len(turns))
    sizes = [tokens(m) for m in turns[start:]]  # only what the window still holds is counted
    total = sum(sizes)
    sizes = [0] * start + sizes
    if total > budget:
        target = budget // 2
        while start < len(turns) - 1 and total > target:
            total -= sizes[start]
            start += 1
            while start < len(turns) - 1 and turns[start].get("role") != "user":
                total -= sizes[start]
                start += 1
    return system + turns[start:], start


def alternate(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive plain-text messages of one role merged into one.

    An interrupted turn can leave two user messages in a row, and some models'
    chat templates (Gemma's) refuse anything but user/assistant alternation.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        prev = out[-1] if out else None
        if (prev is not None and message.get("role") in ("user", "assistant") and prev.get("role") == message.get("role")
                and isinstance(prev.get("content"), str) and isinstance(message.get("content"), str)
                and not prev.get("tool_calls") and not message.get("tool_calls")):
            out[-1] = {**prev, "content": f"{prev['content']} {message['content']}".strip()}
            continue
        out.append(message)
    return out


def tidy_spaces(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assistant's earlier answers with single spaces between their pieces, as the model wrote them.

    The offline voice speaks each piece the gate hands it (TOKEN mode), and Pipecat joins
    the spoken pieces into the context with a space of its own after the gate's, so an
    answer came back as "thank you!  How about yourself?". Its tokens then differ from
    those the model generated, and llama.cpp's prompt cache stopped at the first such
    gap: every turn re-read the end of the answer before it.
    """
    out = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, str) and "  " in content:
            message = {**message, "content": _SPACES.sub(" ", content).strip()}
        out.append(message)
    return out


# --- tool results as facts -----------------------------------------------------------

def _fact(name: str, arguments: dict[str, Any], result: Any) -> str:
    """One tool result as a plain statement for the model."""
    if not isinstance(result, dict) or not result.get("ok", True):
        error = result.get("error") if isinstance(result, dict) else None
        return f"The {name.replace('_', ' ')} tool failed ({error or 'error'})."
    if name == "create_note":
        return f'A note titled "{result.get("title") or arguments.get("title", "")}" was saved.'
    if name == "list_notes":
        titles = [str(n.get("title", "")) for n in result.get("notes", []) if isinstance(n, dict)]
        return ("The user has no notes." if not titles
                else f"The user's notes are titled: {'; '.join(titles)}.")
    if name in ("read_note", "update_note"):
        return f'The note "{result.get("title", "")}" says: {result.get("body") or "(empty)"}'
    if name == "delete_note":
        return f'The note "{result.get("title", "")}" was deleted.'
    if name == "search_notes":
        titles = [str(n.get("title", "")) for n in result.get("notes", []) if isinstance(n, dict)]
        return (f'No note mentions "{result.get("query", "")}".' if not titles
                else f'Notes mentioning "{result.get("query", "")}": {"; ".join(titles)}.')
    # In words, not JSON: a small model reads "status: shipped on Tuesday" as something to say.
    return f"{_fact_opening(name, arguments)} {_plain(_answer_of(result))[:300]}."


def _answer_of(result: Any) -> Any:
    """A custom tool's answer within its result (custom_tools.py wraps it: {"ok": true, "result": ...})."""
    if not isinstance(result, dict):
        return result
    fields = {k: v for k, v in result.items() if k != "ok"}
    return fields["result"] if set(fields) == {"result"} else fields


def _fact_opening(name: str, arguments: dict[str, Any]) -> str:
    """A custom tool's fact up to its answer: "The check order status tool for order number 4512 said:"."""
    asked = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in arguments.items() if v not in (None, ""))
    return f"The {name.replace('_', ' ')} tool{f' for {asked}' if asked else ''} said:"


def facts_ahead(messages: list[dict[str, Any]], name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt of the answer to a custom tool call, as far as it is known before the tool answers:
    the conversation with the request, then its facts up to the tool's words. Read into llama.cpp's
    cache while the tool runs and its start message is said, the answer reads only the tool's words
    (`tool_facts` gives the answer's prompt the same beginning, token for token)."""
    return [*messages, {"role": "system", "content": f"{FACTS_HEADER}\n- {_fact_opening(name, arguments)}"}]


def _plain(value: Any) -> str:
    """A tool's answer as plain words: "status: shipped; arrives: Friday"."""
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"  # Python's True/False are no words to say, nor to read
    return str(value)


FACTS_HEADER = "Facts from this conversation's tools (use them when asked):"
# Closes the facts of the turn being answered. A yes/no question leads the small model to agree
# with it ("Yes, it will rain" from "sunny, no rain"): on bench/bench_tool_facts.py's twelve tool
# answers that contradict the question, 75% of answers were right without it, 85% with it (72
# answers each; docs/llm-models.md); other wordings, or the facts before the question, did worse.
# The answered exchange leaves only its facts (the request is dropped), so this costs the prompt
# cache nothing.
ANSWER_FROM_FACTS = "Answer the user from these facts alone."


def tool_facts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat history without its tool exchanges, each of which comes back as a fact.

    An exchange is the user's request, the assistant's tool call, the tool's result
    and the answer spoken from it. Its facts take its place, as one system message:
    where the exchange was, so that the prompt only ever grows at its end. llama.cpp
    reuses its cache up to the first changed token; a fact put in the system prompt
    made every answer after a tool call re-read the whole history (8-11 s on 2 cores),
    and one moved along to just before the latest user message made every later turn
    re-read the turn before it as well (about 60 of each turn's 90 new tokens).
    """
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    facts: list[str] = []  # of the exchange in progress
    in_exchange = False
    request: dict[str, Any] | None = None  # the user's words that started the exchange in progress

    def settle(answering: bool = False) -> None:
        if facts:
            out.append({"role": "system", "content": FACTS_HEADER + "\n- " + "\n- ".join(facts)
                        + (f"\n{ANSWER_FROM_FACTS}" if answering else "")})
            facts.clear()

    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                function = call.get("function", {})
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except (TypeError, ValueError):
                    arguments = {}
                calls[call.get("id", "")] = (function.get("name", ""), arguments if isinstance(arguments, dict)
                                             else {})
            if out and out[-1].get("role") == "user":
                request = out.pop()  # the request itself: its outcome is the fact
            in_exchange = True
            continue
        if role == "tool":
            name, arguments = calls.get(message.get("tool_call_id", ""), ("tool", {}))
            try:
                result = json.loads(message.get("content") or "{}")
            except (TypeError, ValueError):
                result = message.get("content")
            if result != "IN_PROGRESS":
                facts.append(_fact(name, arguments, result))
            continue
        settle()
        was_exchange, in_exchange, request = in_exchange, False, None
        if role == "assistant" and was_exchange:
            continue  # the answer spoken from the result: its wording is what a small model copies
        out.append(message)
    if in_exchange and request is not None:
        # An exchange not yet answered is this turn's (a custom tool's result, which the model
        # puts in words): it must see what the user asked. Once answered, the fact stands alone.
        out.append(request)
        settle(answering=True)
    settle()
    return out


# --- the spoken answer -----------------------------------------------------------------

def _norm(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


def sentences(text: str) -> list[str]:
    """The complete sentences of `text` (a final piece without end punctuation is left out)."""
    parts = _SENTENCE_END.split(text.strip() + " ")
    return [p.strip() for p in parts if p.strip() and p.strip()[-1] in ".!?\"')]"]


def same(a: str, b: str) -> bool:
    """Whether two sentences say the same words (long enough to matter)."""
    na, nb = _norm(a), _norm(b)
    if len(na.split()) < MIN_WORDS_TO_COMPARE or len(nb.split()) < MIN_WORDS_TO_COMPARE:
        return False
    return na == nb or difflib.SequenceMatcher(None, na, nb).ratio() >= SIMILAR


def earlier_answers(messages: list[dict[str, Any]]) -> list[str]:
    """What the assistant said before that its next answer must not repeat.

    An answer to the same question as the latest one is left out: a user who asks
    again ("what is the capital of France?", twice) should hear the same right answer,
    not a new one forced out at a higher temperature (it was wrong).
    """
    question = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    said: list[str] = []
    asked = ""
    for message in messages:
        if message.get("role") == "user":
            asked = _text(message)
        elif message.get("role") == "assistant" and isinstance(message.get("content"), str):
            if not (question and asked and same(asked, question)):
                said.append(message["content"])
    return said


def earlier_words(messages: list[dict[str, Any]]) -> list[str]:
    """What the user said before their latest message, which an answer must not parrot.

    After a tool's facts the small local model sometimes answered with the user's first
    words of the call, verbatim ("The lobe girl, I have a few questions today." for an order's
    status; conversation bench, 2026-12-06): in 4 of 6 samples of that context. Never a right
    answer, unlike an earlier answer of its own, which may be (`earlier_answers`). The latest
    message is left out: an answer may well begin by restating the question.
    """
    users = [_text(m) for m in messages if m.get("role") == "user"]
    return users[:-1]


def _pieces(text: str) -> list[str]:
    """`text`'s sentences, its last one even without end punctuation (the user's words often have none)."""
    return [p.strip() for p in _SENTENCE_END.split(text.strip() + " ") if p.strip()]


def facts_spoken(result: Any) -> str:
    """A custom tool's answer said plainly, for a turn whose model answer could not be used."""
    if isinstance(result, dict) and not result.get("ok", True):
        return "Sorry, that didn't work."
    plain = _plain(_answer_of(result)).strip().rstrip(".!?")
    return f"Here's what I found: {plain[:300]}." if plain else "Done."


class RepeatedAnswer(Exception):
    """The answer began with a sentence the assistant already said: ask the model again."""


def ends_sentence(piece: str) -> bool:
    """Whether a piece the gate hands over ends its sentence (else it is an opening, and the
    rest of its sentence follows)."""
    return piece.rstrip().rstrip("\"')]").endswith((".", "!", "?"))


def _counted(words: str) -> bool:
    """Whether normalised `words` end on a number ("about two", "1"): a conjunction there joins
    a number ("two and a half hours"), it does not start a clause."""
    last = words.rsplit(" ", 1)[-1]
    return last.isdigit() or last in NUMBER_WORDS


class SentenceGate:
    """Releases an answer as whole sentences, checking each against what was said before.

    - The first sentence repeating an earlier answer, or words the user said before, raises
      RepeatedAnswer (`strict`), or is dropped when the model was already asked again.
    - A sentence repeating one of this answer ends the answer there (a loop).
    - At the end, an unfinished tail is dropped when a sentence was spoken; alone, it is
      spoken with a full stop, so the user hears something rather than silence.
    - A sentence that would take the answer past `budget_tokens` completes it (`full`).
    - With `claims`, a sentence claiming an action (claims.py: "I'll write that down") ends
      the answer before it is spoken (`claimed`): no tool ran this turn, so it would be false.
    """

    def __init__(self, said_before: Iterable[str], *, strict: bool = True, budget_tokens: int = 0,
                 claims: bool = False, heard_before: Iterable[str] = (), heard_alike: bool = False) -> None:
        self.said_before = [s for text in said_before for s in sentences(text)]
        # The user's earlier words (`earlier_words`), each of which an answer must not say back:
        # only an exact match counts ("Your dog is called Rex." may well follow "My dog is called Rex.").
        self.heard_before = {n for text in heard_before for n in map(_norm, _pieces(text))
                             if len(n.split()) >= MIN_WORDS_TO_COMPARE}
        # `heard_alike`: near copies count too (`same`). For the answer to a custom tool's result: the
        # model gave "The lobe girl has a few questions today." for an order's status, the user's first
        # words of the call ("The lobe girl, I have ...") with one changed (conversation bench,
        # 2026-12-07); a tool's answer is never the user's earlier words, and a sentence caught there is
        # replaced by the tool's answer said plainly (llm.py), not by silence.
        self.heard_alike = [p for text in heard_before for p in _pieces(text)] if heard_alike else []
        self.strict = strict
        # The spoken answer's budget (0: none): once a sentence would take the answer past
        # it, the answer is complete (`full`), so it ends on the last whole sentence within it.
        self.budget_chars = int(budget_tokens * CHARS_PER_TOKEN)
        self.buffer = ""
        self.released: list[str] = []
        # The first words of the first sentence, already spoken at a clause break; the rest
        # of that sentence follows it whatever it says (what is spoken cannot be taken back).
        self.opening = ""
        self.looping = False
        self.full = False
        self.claims = claims
        self.claimed = ""  # the kind of action a sentence claimed (claims.NOTE or claims.ACT)
        self.dropped: list[str] = []

    @property
    def stopped(self) -> bool:
        """Whether the answer is over, whatever the model writes next."""
        return self.looping or self.full or bool(self.claimed)

    def feed(self, text: str) -> list[str]:
        """Sentences to speak now (each with its trailing space)."""
        if self.stopped:
            return []
        self.buffer += text
        out: list[str] = []
        while True:
            match = _SENTENCE_END.search(self.buffer)
            if match is None:
                opening = self._opening()
                if opening:
                    out.append(opening)
                return out
            sentence, self.buffer = self.buffer[:match.end()], self.buffer[match.end():]
            if not sentence.strip():
                continue
            if self.opening and self._claims(sentence):  # its first words are said; its claim is not
                self._close_opening()
                return out
            if self.opening:  # the rest of a sentence whose first words were spoken
                self.released.append(f"{self.opening} {sentence.strip()}")
                self.opening = ""
                out.append(sentence)
                continue
            verdict = self._check(sentence.strip())
            if verdict == "loop":
                self.looping = True
                self.buffer = ""
                return out
            if verdict == "claim":
                self.buffer = ""
                return out
            if verdict == "ok" and self._over_budget(sentence.strip()):
                self.full, self.buffer = True, ""
                return out
            if verdict == "ok":
                self.released.append(sentence.strip())
                out.append(sentence)

    def _opening(self) -> str:
        """The first sentence's words up to a clause break, to speak now, or "".

        Only for an answer's first sentence (later ones are spoken while the first is
        heard), after CLAUSE_MIN_WORDS words, and never when an earlier answer began
        with those words: a repeat must still be caught before anything is said.
        """
        if self.released or self.opening:
            return ""
        for match in _CLAUSE_END.finditer(self.buffer):
            clause = self.buffer[:match.start()].strip()
            words = _norm(clause)
            joins = match.group("conjunction") is not None
            if len(words.split()) < CLAUSE_MIN_WORDS or (joins and _counted(words)):
                continue
            if match.end() == len(self.buffer):
                return ""  # wait for the next word: a model that stops at a comma ends a fragment (finish)
            if (any(_norm(s).startswith(words) for s in self.said_before)
                    or any(h.startswith(words) for h in self.heard_before) or self._claims(clause)):
                return ""
            self.opening, self.buffer = clause, self.buffer[match.end():]
            return clause + " "
        return ""

    def _over_budget(self, sentence: str) -> bool:
        """Whether `sentence` would take the answer past its budget (a first sentence never does)."""
        spoken = sum(len(s) + 1 for s in self.released)
        return bool(self.budget_chars and self.released and spoken + len(sentence) > self.budget_chars)

    def _close_opening(self) -> None:
        """End the answer at its spoken opening (the rest of its sentence claimed an action)."""
        self.released.append(self.opening.rstrip(",;:-\u2013\u2014 ") + ".")
        self.opening, self.buffer = "", ""

    def _claims(self, text: str) -> bool:
        """Whether `text` claims an action (when claims are watched); notes which kind."""
        if self.claims:
            self.claimed = claimed(text)
        return bool(self.claimed)

    def _check(self, sentence: str) -> str:
        if any(same(sentence, s) for s in self.released):
            return "loop"
        if (any(same(sentence, s) for s in self.said_before) or _norm(sentence) in self.heard_before
                or any(same(sentence, h) for h in self.heard_alike)):
            if self.strict and not self.released:
                raise RepeatedAnswer(sentence)
            self.dropped.append(sentence)
            return "drop"
        return "claim" if self._claims(sentence) else "ok"

    def finish(self) -> str:
        """What is left to speak once the model stopped."""
        tail, self.buffer = self.buffer.strip(), ""
        if self.stopped or not tail:
            return ""
        if self.opening and self._claims(tail):
            self._close_opening()
            return ""
        if self.opening:  # the first sentence's end: spoken, whatever its state (see `opening`)
            tail = tail if tail[-1] in ".!?\"')]" else tail.rstrip(",;:- ") + "."
            self.released.append(f"{self.opening} {tail}")
            self.opening = ""
            return tail
        if tail[-1] not in ".!?\"')]":
            if self.released:
                self.dropped.append(tail)  # cut by the token budget: not a sentence
                return ""
            tail = tail.rstrip(",;:- ") + "."
        verdict = self._check(tail)
        if verdict == "ok":
            self.released.append(tail)
            return tail
        return ""
