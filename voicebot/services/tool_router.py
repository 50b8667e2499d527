"""An assistant's custom tools, for a model that cannot call tools itself.

The offline model's own tool calls do not parse, and asked on every turn which tool (or
none) a sentence wants, it called one for three ordinary questions in four
(docs/llm-models.md). So a custom tool is reached in two steps:

1. **A gate**: the sentence's embedding (MiniLM, the notes classifier's encoder) must be
   close to what the tool says of itself (its description, its name in words, its
   arguments). Most chat stops here, in a few milliseconds, without asking the model.
2. **A check by the model**, for the tools past the gate: one request per tool, constrained
   to `{"request": false}` or `{"request": true, "arguments": {...}}`, each argument copied
   from the user's words or null: by llama.cpp grammars for the local model (the verdict,
   then a request's arguments: `VERDICT_GRAMMAR`, `Card.arguments_grammar`), by a JSON
   schema (`Card.response_format`, OpenAI's structured outputs, which Ollama, vLLM and
   llama.cpp's server take too) for a hosted one in router mode.

A required argument the user did not say is asked for, never invented: an argument whose
words are not in what the user said counts as not said (`heard`). The next turn is then
checked against that tool without the gate ("It's 4512." is far from any description).
A call that no number or name the user said supports also needs the model to be sure of it
(its probability of "true", BARE_CONFIDENCE). Measured in docs/llm-models.md.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .spoken import (DIGIT_WORDS, NUMBER_WORDS, clock_time, expand_repeats, may_say_a_number, said_time,
                     spoken_numbers)

logger = logging.getLogger("voicebot.tools")

# Cosine similarity between a sentence and a tool's description at which the model is asked.
# Chosen on bench/custom_tool_dev.json (tools unlike the benchmark's), docs/llm-models.md.
GATE = 0.25
# The same for a tool that takes no arguments. A request for one is often a bare command or a
# role ("representative please", "get me a manager"), with none of its description's words in
# it, and its card has no arguments' texts to be near. Chosen on blind set 1 (its human-agent
# tool: 17 -> 22 of 27, no more false calls; 0.15 gave 24 and 3 more) and checked on the others.
NO_ARGUMENTS_GATE = 0.20
# The model's P(request) needed for a call, or a question for an argument, that no number or
# name the user said supports (`evidence`; a call with one needs only the model's answer). On the
# development set the wrong ones were at 0.52-0.61 and the right ones mostly above 0.66.
BARE_CONFIDENCE = 0.65
# A name is weaker evidence than a number: a question of general knowledge names places and people
# too. "What is the capital in Spain?" called the weather tool with {"city": "Spain"} at P 0.54 in
# two of three runs of the spoken conversation bench; the right calls the five request sets make
# on a name alone were at 0.57-0.64 ("I'm at the Riverside Park entrance", "heading to Seattle").
# Between the two, with that narrow a margin on either side.
NAME_CONFIDENCE = 0.56
MAX_CHECKS = 2  # tools past the gate the model is asked about, closest first (each costs a request)
# A second tool past the gate is asked about only this near the closest one: on the five custom
# tool sets no request's tool was further behind (bench/custom_tool_*.json, docs/llm-models.md),
# and a sentence near two tools by a wider margin cost a second check (~0.45 s on 2 cores) for
# nothing: 0.56-0.85 checks per sentence that asks for no tool, 0.53-0.76 with the margin.
SECOND_CHECK_MARGIN = 0.08
CHECK_TOKENS = 80  # the JSON answer: a flag and a few short arguments
# The start of every answer, written into the request as the assistant's (llama.cpp goes on
# from it): the tokens the grammar would force anyway, each a decoding step saved.
ANSWER_START = '{"request":'
# The local check's first step: only the verdict after ANSWER_START (its probability is the
# model's P(request)); the arguments, when it is "true", are a second step (Card.arguments_grammar).
VERDICT_GRAMMAR = 'root ::= " "? ("true" | "false")'
VALUE_RULES = (r'string ::= "\"" [^"\\\x00-\x1f]{1,80} "\""',
               r'integer ::= "-"? [0-9]{1,12}',
               r'number ::= "-"? [0-9]{1,12} ("." [0-9]{1,6})?',
               'boolean ::= "true" | "false"')
_WORD = re.compile(r"[a-z]+|[0-9]+")  # "3pm" is "3" and "pm"
# A said word this long that begins a value's word is that word's stem: "electric" for the
# model's "electricity", "refill" for "refills" (the value in a tool's own vocabulary, an enum).
_STEM = 5
_CODE = re.compile(r"[A-Z]{2,4}")  # a currency, country, language or airport code
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+")  # "4,512", as Whisper writes a number said aloud
_QUOTED = re.compile(r'"([^"]+)"')  # an example in a description: e.g. "GBP", "USD"
_HAS_DIGIT = re.compile(r"\b(?=\w*\d)\w+\b")  # "L1", "8JQ", "4512": a postcode, a reference, a number


@dataclass(frozen=True)
class ToolCall:
    """What the router decided for one sentence."""

    tool: str
    arguments: dict[str, Any]
    missing: tuple[str, ...] = ()  # required arguments the user has not said yet
    confidence: float | None = None  # the model's P(request), when the server gave its probabilities

    def question(self) -> str:
        """What the assistant asks for the first missing argument."""
        return f"Sure. What is the {self.missing[0].replace('_', ' ')}?"


@dataclass
class Card:
    """One tool as the router sees it: its schema and the embeddings of what it says of itself."""

    name: str
    description: str
    properties: dict[str, Any]
    required: list[str]
    vectors: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, schema: Any, encode: Any) -> "Card":
        """`schema`'s card; `encode(text)` gives a text's embedding."""
        words = schema.name.replace("_", " ").replace("-", " ")
        properties = dict(schema.properties or {})
        # What it does, its name in words, and what each argument is ("flight number: like BA 117"
        # is what "check on LH 400" is close to).
        texts = [schema.description or words, words, f"{words}: {schema.description}",
                 *(f"{name.replace('_', ' ')}: {spec.get('description', '')}" for name, spec in properties.items())]
        return cls(schema.name, schema.description or "", properties, list(schema.required or []),
                   np.stack([encode(t) for t in texts]))

    def closeness(self, vector: np.ndarray) -> float:
        return float((self.vectors @ vector).max())

    @property
    def gate(self) -> float:
        """The closeness at which the model is asked about this tool."""
        return GATE if self.properties else NO_ARGUMENTS_GATE

    def arguments_opening(self) -> str:
        """What follows ANSWER_START in an answer that is a request, up to its first argument's value:
        ` true, "arguments": {"order_number":`. The grammar forces every token of it, and the model
        would still take a decoding step for each (~75 ms each on 2 cores): written into the request
        instead, llama.cpp reads them all at once."""
        first = next(iter(self.properties), None)
        return ' true, "arguments": {' + (f'"{first}":' if first is not None else "}}")

    def arguments_grammar(self) -> str:
        """llama.cpp's GBNF for the rest of a request after `arguments_opening`: the first argument's
        value (or null), the others with their names, and the closing braces. JSON on one line.

        Written here rather than sent as a JSON schema: llama.cpp's schema grammar lets the
        model indent its JSON (30 tokens for a two-line answer, 2.4 s on 2 busy cores). The
        single space a model writes after ":" and "," is allowed: forbidding it made the model
        choose between tokens it would never write (in the verdict, "true" against " false"),
        which decided at random.
        """
        def value(spec: dict[str, Any]) -> str:
            return f'" "? ({_rule(spec)} | "null")'

        (_, first), *others = self.properties.items()
        rest = "".join(f' "," " "? "\\"{name}\\":" {value(spec)}' for name, spec in others)
        return "\n".join([f'root ::= {value(first)}{rest} "}}}}"', *VALUE_RULES])

    def response_format(self) -> dict[str, Any]:
        """OpenAI's `response_format` for the whole answer, in strict mode: every member required
        (an argument not said is null), nothing else allowed. For a hosted model in router mode,
        which takes no grammar and no answer started for it."""
        arguments = {name: _nullable(spec) for name, spec in self.properties.items()}
        schema = {"type": "object", "additionalProperties": False, "required": ["request", "arguments"],
                  "properties": {"request": {"type": "boolean"},
                                 "arguments": {"type": "object", "additionalProperties": False,
                                               "required": list(arguments), "properties": arguments}}}
        return {"type": "json_schema", "json_schema": {"name": "tool_request", "strict": True, "schema": schema}}

    def prompt(self) -> str:
        return check_prompt(self.name, self.description, self.properties)


def check_prompt(name: str, description: str, properties: dict[str, Any]) -> str:
    """The system prompt of a tool's check: the same for every session with the tool, so a worker
    reads it into llama.cpp's cache at start (services.warm_up) and a first check does not wait for it."""
    lines = [f"- {arg}: {spec.get('description', '')} ({spec.get('type', 'string')})"
             for arg, spec in properties.items()]
    return ("You decide whether a voice assistant's user is asking it to use one tool.\n"
            f"The tool: {name}. {description}\n"
            + ("Its arguments:\n" + "\n".join(lines) + "\n" if lines else "")
            + "Answer in JSON. \"request\" is true only when the user wants this tool used now. Talking about "
              "the topic, a general question, a story or an opinion is not a request. Each argument is copied "
              "from the user's own words, or null when they did not say it: never guess one.")


def _kind(spec: dict[str, Any]) -> str:
    """An argument's JSON type as the check's answer holds it: a scalar type, anything else a string."""
    kind = spec.get("type")
    return kind if kind in ("integer", "number", "boolean") else "string"


def _enum(spec: dict[str, Any]) -> list[Any]:
    return spec["enum"] if isinstance(spec.get("enum"), list) else []


def _rule(spec: dict[str, Any]) -> str:
    """The grammar rule for one argument's value: its enum, else its type (anything else is a string)."""
    if _enum(spec):
        return "(" + " | ".join(json.dumps(json.dumps(v)) for v in spec["enum"]) + ")"
    return _kind(spec)


def _nullable(spec: dict[str, Any]) -> dict[str, Any]:
    """One argument in the strict schema: its enum or type (anything else a string), or null."""
    member: dict[str, Any] = {"type": [_kind(spec), "null"]}
    if spec.get("description"):
        member["description"] = str(spec["description"])
    if _enum(spec):
        member["enum"] = [*spec["enum"], None]
    return member


def request_top(tokens: list[tuple[str, list[tuple[str, float]]]]) -> list[tuple[str, float]]:
    """The top log-probabilities at the answer's "true" or "false": its first such token's.

    [(token, [(alternative, logprob)...])...] as the server gave them. After the answer
    started for the local model it is the first token; a hosted model writes `{"request":`
    itself first, and "request" is the schema's first member, so its value comes first.
    """
    for token, top in tokens:
        if token.strip() in ("true", "false"):
            return top
    return []


def confidence(top: list[tuple[str, float]]) -> float | None:
    """P(request) from the first answer token's top log-probabilities: "true" against "false".

    llama.cpp reports them before the grammar, so they are the model's own preference.
    """
    p = {"true": 0.0, "false": 0.0}
    for token, logprob in top:
        word = token.strip()
        if word in p:
            p[word] += math.exp(logprob)
    total = p["true"] + p["false"]
    return p["true"] / total if total > 0 else None


def _p(value: float | None) -> str:
    """A probability for the log ("?" when the server gave none)."""
    return "?" if value is None else f"{value:.2f}"


def parse_answer(text: str) -> dict[str, Any] | None:
    """The arguments of an answer that is a request, or None (not one, or unreadable).

    The local model's request puts ANSWER_START in its mouth (llama.cpp's answer may repeat
    it); a hosted model writes the whole object.
    """
    text = text.strip()
    try:
        answer = json.loads(text if text.startswith("{") else ANSWER_START + text)
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("request") is not True:
        return None
    arguments = answer.get("arguments")
    return arguments if isinstance(arguments, dict) else {}


def heard(value: Any, said: str) -> bool:
    """Whether an argument's value comes from the user's words.

    Numbers may be said as digits, digit by digit ("four five one two") or in words
    ("twelve", "a hundred and fifty"); a code may be spelled out ("J D 0 1 4"); a word may be
    given in another form of one said ("electricity" for "electric"). A short
    upper-case code is the model's own rendering of a name, as the tool asks ("dollars" ->
    "USD"), so it stands; any other word or number must have been said.
    """
    if _CODE.fullmatch(str(value).strip()):
        return True
    tokens = _WORD.findall(str(value).lower())
    if not tokens:
        return False
    words = expand_repeats(_WORD.findall(said.lower()))  # "double 0" is two zeros said
    spoken = set(words) | spoken_numbers(words)
    digits = "".join(DIGIT_WORDS.get(w, w if w.isdigit() else " ") for w in words).replace(" ", "")
    spelled = "".join(w if len(w) == 1 and w.isalpha() else " " for w in words).split()  # "j d" -> "jd"
    return all(t in spoken or (t.isdigit() and t in digits) or any(t in run for run in spelled)
               or any(t in w for w in words if len(t) > 3)
               or any(t.startswith(w) for w in words if len(w) >= _STEM) for t in tokens)


def _unformatted(value: Any) -> Any:
    """A number Whisper wrote with thousands separators ("4,512"), as it was said: "4512".

    An order or account number is digits; the separators are the transcript's, not the user's.
    """
    return value.replace(",", "") if isinstance(value, str) and _GROUPED.fullmatch(value.strip()) else value


_IDENTIFIER = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9 .\-/]*")
_LOWER_WORD = re.compile(r"[a-z]{4,}")  # a word, not a code's letters ("abc123")


def identifier_argument(name: str) -> bool:
    """Whether an argument is a number or code by its name (order_number, tracking_code, postcode)."""
    return any(word in ("number", "code", "postcode", "id") for word in name.lower().split("_"))


def as_identifier(name: str, value: Any) -> Any:
    """A number or code argument as its characters, or None when the value is no such thing.

    Said in words it becomes digits ("four five one two" -> "4512", "J D zero one" -> "JD01");
    a leading word of the argument's own name goes ("order 4512" -> "4512"). What is left must be
    letters and digits with at least one digit and no lower-case word: "3,300-in-binship", Whisper's
    "3309 been shipped", is not an order number, and the user is asked for it rather than the
    tool called with it.
    """
    if not isinstance(value, str):
        return value
    words = expand_repeats(value.strip().lstrip("#").split())  # "double 0" -> "0 0"
    if words and words[0].lower() in name.lower().split("_"):
        words = words[1:]
    bare = [w.lower().strip(",.") for w in words]
    counted = spoken_numbers(bare) if bare and all(w in NUMBER_WORDS for w in bare) else set()
    spelled = [DIGIT_WORDS.get(w, w if w.isdigit() else w.upper() if len(w) == 1 and w.isalpha() else None)
               for w in bare]
    if len(counted) == 1 and not all(w in DIGIT_WORDS for w in bare):
        text = counted.pop()  # "twelve", "a hundred and fifty"
    elif words and None not in spelled:
        text = "".join(spelled)  # digit by digit ("0 7 7 0 0", "four five"), or spelled out
    else:
        text = str(_unformatted(" ".join(words).rstrip(".,")))
    if not _IDENTIFIER.fullmatch(text) or not any(c.isdigit() for c in text) or _LOWER_WORD.search(text):
        return None
    return text


def code_length(spec: Any) -> int | None:
    """The length of the codes an argument's description gives as its examples ("ISO 4217 code,
    e.g. "GBP", "USD"": 3), or None when its examples are not all codes of one length, or it has none."""
    examples = _QUOTED.findall(str(spec.get("description", ""))) if isinstance(spec, dict) else []
    lengths = {len(e) for e in examples}
    if examples and len(lengths) == 1 and all(_CODE.fullmatch(e) for e in examples):
        return lengths.pop()
    return None


def of_its_form(value: Any, spec: Any) -> bool:
    """Whether a value has the form the argument's examples show: a code like them (the model writes
    "USD" for "dollars"); any value for an argument without code examples."""
    length = code_length(spec)
    return length is None or (isinstance(value, str) and len(value.strip()) == length
                               and _CODE.fullmatch(value.strip().upper()) is not None)


def time_argument(name: str, spec: Any) -> bool:
    """Whether an argument is a time of day: JSON Schema's "time" format, or named so (time, pickup_time;
    not time_zone)."""
    name = name.lower()
    return (isinstance(spec, dict) and spec.get("format") == "time") or name == "time" or name.endswith("_time")


def as_time(value: Any) -> Any:
    """A time argument as a clock reads it ("half past seven" -> "7:30"), or as said when it is no
    clock time the rules know: a time is still the user's, unlike a garbled order number."""
    return (clock_time(value) or value) if isinstance(value, str) else value


def evidence(arguments: dict[str, Any], said: str) -> str:
    """What specific thing the user said the arguments carry: "number" (an order number, a postcode,
    an amount), "name" (a city, a person, as the transcript capitalises it), or "" for neither.

    Such a thing is said to a tool; a common word is not evidence ("cancelled her magazine
    subscription" gives a plan, "magazine", to a story), nor is a code the model made up, nor
    a day or month (capitalised, but said of any plan).
    """
    if any(any(c.isdigit() for c in str(v)) for v in arguments.values()):
        return "number"
    names = _names(said)
    return "name" if any(w in names for v in arguments.values() for w in _WORD.findall(str(v).lower())) else ""


_CALENDAR = frozenset("monday tuesday wednesday thursday friday saturday sunday january february march april may "
                      "june july august september october november december".split())
_SENTENCE_END = re.compile(r"[.?!]+\s+")
_TITLE_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def _names(said: str) -> set[str]:
    """The words `said` capitalises inside a sentence (Whisper writes "Paris", not "magazine"), in lower case."""
    return {word.lower() for sentence in _SENTENCE_END.split(said.strip())
            for word in _TITLE_WORD.findall(sentence)[1:]
            if word[0].isupper() and not word.startswith(("I'", "I\u2019")) and word != "I"
            and word.lower() not in _CALENDAR}


@lru_cache(maxsize=512)
def _encode(text: str) -> np.ndarray:
    """A text's embedding; a worker's sessions share their assistants' tools, so each is encoded once."""
    from .embeddings import shared

    return shared().encode(text)


class CustomToolRouter:
    """The custom tools of one session, and the decision for each user sentence."""

    def __init__(self, schemas: list[Any]) -> None:
        """Blocking (embeddings of each tool's texts, cached per worker): build it in a thread."""
        self.cards = [Card.of(schema, _encode) for schema in schemas]
        self.pending: ToolCall | None = None  # a call waiting for an argument the assistant asked for

    def candidates(self, sentence: str) -> list[tuple[float, Card]]:
        """The tools past the gate for `sentence`, closest first, a second only near the first
        (SECOND_CHECK_MARGIN; blocking numpy: call in a thread).

        A sentence with codes or numbers in it is also measured without them, and the nearer of
        the two counts: to the encoder a postcode is a run of tokens with no topic, and it drew
        "Internet's not working, I'm at L1 8JQ." under the gate (0.23, without it 0.28); a
        tracking number or a time is a tool's topic itself, so the sentence as said counts too.
        """
        vectors = [_encode(sentence)]
        if _HAS_DIGIT.search(sentence):
            topic = " ".join(_HAS_DIGIT.sub(" ", sentence).split())
            if topic:
                vectors.append(_encode(topic))
        scored = sorted(((max(card.closeness(v) for v in vectors), card) for card in self.cards), key=lambda s: -s[0])
        passed = [(score, card) for score, card in scored if score >= card.gate][:MAX_CHECKS]
        return [(score, card) for score, card in passed if score >= passed[0][0] - SECOND_CHECK_MARGIN]

    async def decide(self, sentence: str, ask: Any, *, candidates: list[tuple[float, Card]]) -> ToolCall | None:
        """The call `sentence` asks for, or None. `ask(messages, card)` asks the model about `card`'s
        tool, constrained to its answer's form, and returns the answer and the top log-probabilities
        at its "true" or "false", [(token, logprob)] (see `check`, `request_top`). Given
        `arguments_from=P`, it may leave the arguments out of a request the model makes at under P."""
        pending, self.pending = self.pending, None
        if pending is not None:
            card = next(c for c in self.cards if c.name == pending.tool)
            call = await self.check(card, sentence, ask, earlier=pending)
            if call is not None:
                return self._settle(call)
        for _, card in candidates:
            call = await self.check(card, sentence, ask)
            if call is not None:
                return self._settle(call)
        return None

    def _settle(self, call: ToolCall) -> ToolCall:
        if call.missing:
            self.pending = call
        return call

    async def check(self, card: Card, sentence: str, ask: Any, *, earlier: ToolCall | None = None) -> ToolCall | None:
        """Ask the model whether `sentence` requests `card`'s tool; None when it does not."""
        user = sentence
        if earlier is not None:
            user = f"(The assistant had asked: {earlier.question()})\n{sentence}"
        # Under NAME_CONFIDENCE only a number the user said makes a call (below): with none in the
        # sentence its arguments cannot change the decision, and the local model is not asked for them
        # (a second request, ~0.4 s on 2 cores: "What is the capital of Spain?" and the weather tool).
        options = {} if earlier is not None or may_say_a_number(sentence) else {"arguments_from": NAME_CONFIDENCE}
        try:
            text, top = await ask([{"role": "system", "content": card.prompt()}, {"role": "user", "content": user}],
                                  card, **options)
        except Exception as exc:  # noqa: BLE001 - a failed check is chat, never a crash of the turn
            logger.warning("[VoiceSession] custom tool check for %s failed: %s", card.name, exc)
            return None
        given = parse_answer(text)
        if given is None:
            logger.info("[VoiceSession] custom tool %s not called: the model judged it no request (P=%s)",
                        card.name, _p(confidence(top)))
            return None
        arguments = dict(earlier.arguments) if earlier is not None else {}
        for name, value in given.items():
            if name not in card.properties or value in (None, ""):
                continue
            if not of_its_form(value, card.properties[name]):
                # "30 degrees Celsius in Fahrenheit" gave a currency tool "Celsius": what the user said
                # for the argument is not of the kind the tool takes, so the sentence is not for it.
                logger.info("[VoiceSession] custom tool %s not called: its %s as heard is not of its form",
                            card.name, name)
                return None
            if heard(value, sentence):
                if identifier_argument(name):
                    value = as_identifier(name, value)
                else:
                    value = as_time(value) if time_argument(name, card.properties[name]) else _unformatted(value)
                if value is not None:
                    arguments[name] = value
        missing = tuple(name for name in card.required if name not in arguments)
        sure = confidence(top)
        if earlier is None and sure is not None and sure < BARE_CONFIDENCE:
            said = evidence(arguments, sentence)
            if not said or (said == "name" and sure < NAME_CONFIDENCE):
                # No number of the tool's was said (or only a name, and the model barely leans to a
                # request) and the model is unsure it is one: on the tool's topic ("my flight last
                # year was delayed") a call, or a question for its argument, is wrong.
                logger.info("[VoiceSession] custom tool %s not called: P=%s without %s evidence in the words",
                            card.name, _p(sure), "enough" if said else "any")
                return None
        # A time the user said and the model left out ("for 4 at 7 pm": the small model often gives the
        # party size alone) is taken from the sentence; after the bar, so it is never the evidence.
        for name, spec in card.properties.items():
            if name not in arguments and time_argument(name, spec):
                said = said_time(sentence)
                if said is not None:
                    arguments[name] = said
                    missing = tuple(m for m in missing if m != name)
        return ToolCall(card.name, arguments, missing, sure)
