"""Notes requests in plain words, for models too small to call tools.

The LLM shipped for the offline default ignores tool definitions, so on that path a
user's notes request is recognised here and turned into a real tool call; everything
else goes to the LLM as chat. Word patterns recognise the common phrasings with exact
arguments; a classifier over sentence embeddings (`intent_model.py`) catches the rest.
Their recall and false calls are measured on `bench/tool_requests.json` (written without
looking at the patterns or the classifier's training set) by `bench/bench_tools.py`;
`tests/test_intents.py` holds them to those figures.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..notetitle import auto_title
from .intent_model import CHAT, THRESHOLD, VETO, shared as classifier

# Under this probability of chat, the classifier's likeliest tool is called even under THRESHOLD: the
# sentence is surely a notes request, only split between two tools (5-fold cross-validation on the
# training set, bench_tools.py --sweep: recall 90.3 -> 90.5% at 0.5, false calls 21 either way).
SURELY_NOT_CHAT = 0.05

SPOKEN_BODY_WORDS = 20  # a saved note this short is read back whole in the confirmation
_FILLER = re.compile(r"^(?:(?:um+|uh+|so|okay|ok|hey|hi|please|pearl|right|well|oh|and|alright|now|yeah)[,.!]?\s+)+",
                     re.I)
_POLITE = r"(?:(?:can|could|would|will) you\s+(?:please\s+)?|please\s+|i(?:'d| would) like (?:you )?to\s+|" \
          r"i want (?:you )?to\s+|i need (?:you )?to\s+|let's\s+|go ahead and\s+)?"
_NOTE = r"(?:note|notes|memo|list)"
_TITLE = r"(?P<title>[\w'&-]+(?: [\w'&-]+){0,3}?)"
_LATEST = r"(?P<latest>last|latest|most recent|newest|recent|previous)"
_THE = r"(?:the|my|that|this)\s+"

_VERB_DELETE = r"(?:delete|remove|erase|scrap|trash|discard|bin|ditch|wipe|junk|chuck(?: out)?|get rid of|" \
               r"throw (?:away|out)|clear|drop)"
_READ = r"(?:read|open|show|pull up|bring up|tell me|recite|play|let(?:'s| me) hear|dig out)"
# "could you add that ...", "put down ...": what an update says after naming its note
_INSERT = (r"(?:(?:can|could|would) you\s+|please\s+)?(?:also\s+)?"
           r"(?:add|put(?: down)?|write(?: down)?|jot(?: down)?|append|include)"
           r"\s+(?:that\s+)?(?P<body>.+)")
# "what did I put in the ...", "remind me what I wrote on my ...": a read, whatever the verb
_WHAT_I_PUT = rf"\bwhat (?:i|did i) (?:wrote|write|put|saved?|jotted|noted)(?: down)? (?:in|on) {_THE}"

# Tried in order; the first match wins (a delete or an update names a note too, so they go first).
_RULES: list[tuple[str, str]] = [
    ("delete_note", rf"\b{_VERB_DELETE}\s+(?:{_THE})?(?:{_LATEST}\s+)?{_NOTE}\b"
                    rf"(?:\s+(?:called|named|titled|about|on|for|with)\s+(?:the\s+)?{_TITLE})?"),
    ("delete_note", rf"\b{_VERB_DELETE}\s+{_THE}?{_TITLE}\s+{_NOTE}\b"),
    ("delete_note", r"\b(?:delete|remove|erase|scrap|get rid of)\s+what i (?:just )?(?:saved|wrote|noted)(?P<latest>)"),
    # "what did I put in the garden note?" asks what is there: before the updates' "put in the note"
    ("read_note", rf"{_WHAT_I_PUT}{_TITLE}\s+(?:note|memo|list)\b"),
    ("read_note", rf"{_WHAT_I_PUT}(?:note|memo)\s+(?:about|on|for|called|named)\s+(?:the\s+)?{_TITLE}[.!?]?$"),
    # "stick it in my notes that ...": into the notes, not into one of them
    ("create_note", r"\b(?:add|put|stick|pop|chuck|save|write|keep|log)\s+(?:(?:it|this|that)\s+)?(?:down\s+)?"
                    r"(?:in|into|to|on)\s+my\s+notes\b\s*(?:that\b|saying\b|[:,\u2013\u2014-])?\s*(?P<body>.+)"),
    # "for the note I just wrote, add that ...": the latest note, by what the user did with it
    ("update_note", rf"\b(?:for|to|in|on|into)\s+(?:the|that)\s+(?:note|memo)\s+(?:i|we)\s+just\s+"
                    rf"(?:made|wrote|saved|took|created|did)(?P<latest>),?\s+{_INSERT}"),
    # "add to my last note that ...", "tack this onto the birthday note: ..." (the words come after the note)
    ("update_note", rf"\b(?:add|append|tack|stick|put)\s+(?:(?:this|that|it|something)\s+)?(?:on\s+)?(?:to|onto|on to|in|into)\s+"
                    rf"{_THE}(?:{_LATEST}\s+)?{_TITLE}?\s*{_NOTE}\b\s*(?:that\b|saying\b|[:,\u2013\u2014-])?\s*(?P<body>.+)"),
    # "in the note about the Lisbon trip, could you add that ...", "in the gift ideas note, put down ..."
    ("update_note", rf"\b(?:in|on|to)\s+{_THE}(?:{_LATEST}\s+)?{_NOTE}\s+(?:about|on|for|called)\s+(?:the\s+)?"
                    rf"{_TITLE},?\s+{_INSERT}"),
    ("update_note", rf"\b(?:in|on|to)\s+{_THE}(?:{_LATEST}\s+)?{_TITLE}?\s*{_NOTE},?\s+{_INSERT}"),
    # "add a line to the garden note saying buy compost": what the line says is the addition
    ("update_note", rf"\b(?:add|append|put|include|stick)\s+(?P<body>.+?)\s+(?:to|on|onto|in|into)\s+{_THE}?"
                    rf"(?:{_LATEST}\s+)?{_TITLE}?\s*{_NOTE}\b(?:,?\s+(?:saying|that says|to say|reading)\s+(?P<said>.+))?"),
    ("update_note", rf"\b(?:update|change|edit|amend)\s+{_THE}?(?:{_LATEST}\s+)?{_TITLE}?\s*{_NOTE}\b"
                    # What to put in it: after a comma, colon or dash ("update the recipe note: use brown
                    # sugar"), or after words that say so ("...note to include a hat").
                    r"(?:(?:\s*[,:?.!\u2013\u2014-]\s*|\s+(?:to say|so it says|so that it says|so it reads|so that|so|to read|to include|"
                    r"to also say|with|by adding|adding|and (?:also )?(?:add|include|put|write)|to add)\s+)(?P<body>.+))?"),
    ("search_notes", r"\b(?:search|look through|look in|check|go through|scan)\s+(?:my|the)\s+notes\s+"
                     r"(?:for|about)\s+(?P<query>.+)"),
    ("search_notes", r"\b(?:do i have|have i got|is there|are there|did i (?:make|save|write|take))\s+"
                     r"(?:a |any |anything |some )?(?:notes?|memos?)\s+"
                     r"(?:about|on|mentioning|for|with|regarding|that mentions?)\s+(?P<query>.+)"),
    ("search_notes", r"\bwhich\s+(?:of\s+)?(?:my\s+|the\s+)?notes\s+(?:talk about|talks about|mention|mentions|"
                     r"are about|say anything about|say something about|cover|contain|(?:have|has) the words?)\s+(?P<query>.+)"),
    ("search_notes", r"\b(?:anything|something)\s+(?:in|among)\s+my\s+notes\s+(?:about|on|mentioning|regarding)\s+"
                     r"(?P<query>.+)"),
    ("search_notes", r"\bfind\s+(?:my |the |any )?(?:notes?|memos?)\s+(?:about|on|mentioning|with|regarding)\s+"
                     r"(?P<query>.+)"),
    # "find the note that mentions the gate code", "did I write down anything about the landlord?"
    ("search_notes", r"\b(?:find|is there|are there|do i have|have i got)\s+(?:me\s+)?(?:my|the|every|any|a|all the)?\s*"
                     r"(?:notes?|memos?)\s+(?:that|which)\s+(?:mentions?|talks? about|says?|is about|are about)\s+"
                     r"(?P<query>.+)"),
    ("search_notes", r"\bdid i (?:ever )?(?:note|write|jot|save|put)(?: down)?\s+(?:anything|something)\s+"
                     r"(?:about|on|mentioning|regarding)\s+(?P<query>.+)"),
    ("search_notes", r"\bwhere did i (?:write|note|jot|put|save)(?: down)?\s+(?:the\s+|my\s+)?(?P<query>.+)"),
    ("search_notes", r"\bwhat (?:did i|have i|have i got) (?:write|written|note|noted|save|saved|jot|jotted)(?: down)?\s+"
                     r"(?:about|on|regarding)\s+(?P<query>.+)"),
    ("read_note", rf"\b(?:{_READ}|repeat|what(?:'s| is| was| did)|go over|remind me (?:of|what))\b.*?\b{_LATEST}\s+"
                  r"(?:note|memo|thing i (?:saved|wrote|noted))\b"),
    ("read_note", r"\bwhat (?:did i|have i) just (?:save|saved|note|noted|write|written|jot|jotted)(?P<latest>)"),
    ("list_notes", r"\b(?:list|show|what|which|how many|read|tell me|go over|give me|run through)\b.*\b(?:notes|memos)\b"),
    ("list_notes", r"\bwhat (?:have i|do i have|did i) (?:got )?(?:written|noted|saved|jotted)(?: down)?\s*[?.!]?$"),
    ("read_note", rf"\b(?:{_READ}|what(?:'s| is) in)\b.*?\b(?:note|memo)\s+(?:called|named|titled|about|on|for|with)\s+"
                  rf"(?:the\s+)?{_TITLE}[.!?]?$"),
    ("read_note", rf"\b(?:{_READ}|tell me what|what(?:'s| is) in)\s+(?:me\s+)?(?:my|the)\s+{_TITLE}\s+(?:note|memo|list)\b"),
    ("read_note", rf"\bwhat (?:does|did) (?:my|the) {_TITLE} (?:note|memo|list) say\b"),
    ("create_note", rf"\b(?:create|make|add|take|write|start|new|save|jot)\s+(?:down\s+)?"
                    rf"(?:a|an|one|another|new|the)?\s*(?:new\s+)?(?:note|memo)\b"
                    rf"(?:\s+(?:called|named|titled)\s+(?:the\s+)?{_TITLE})?"
                    r"(?:\s*(?:[:,-]|that says|saying|that|which says|with the text|with text|to say|about|for|to|"
                    r"reading|for me|for me that|for me saying|for me:)\s*)?(?P<body>.*)"),
    # "Remind me to <do something>" is a request whatever the something, even one Whisper
    # misheard ("remind me to wander the plants", conversation bench 2026-12-05): not
    # overrulable, unlike "remind me" alone ("remind me how tides work").
    ("create_note", r"\b(?:remind me|don't let me forget|do not let me forget) to\s+(?P<body>\w.+)"),
    ("create_note", r"\b(?:remember|memori[sz]e|keep in mind|make a note of|note down|note that|jot down|write down|"
                    r"(?:write|jot|note|get|put) (?:it|this|that|these) down|"
                    r"put down|save (?:this|that|the following)|don't let me forget|do not let me forget|"
                    r"make sure i (?:don't )?(?:remember|forget)|remind me)\b(?:\s+for me)?\s*(?:that|to|this|:|,)?\s*(?P<body>.+)"),
]
PATTERNS: list[tuple[str, re.Pattern[str]]] = [(tool, re.compile(rule, re.I)) for tool, rule in _RULES]
# Rules whose words often mean something else ("how many notes in an octave", "remind me
# how tides work"): only their calls may be overruled by the classifier. The others name a
# note and what to do with it ("take a note called ..."), and always stand.
_AMBIGUOUS = {i for i, (tool, rule) in enumerate(_RULES)
              if (tool == "list_notes") or (tool == "create_note" and rule.startswith(r"\b(?:remember"))}
# Said to a note-taking assistant, these are chat, not requests.
NOT_A_REQUEST = re.compile(
    r"\b(?:remember when|do you remember|can you remember|could you remember|will you remember|"
    r"what notes? (?:is|are) (?:middle|high|low)|musical note|notes? in class|take notes (?:in|at|during|for)|"
    r"write (?:me )?(?:a|an) (?:poem|story|song|essay|letter|haiku|email)|how (?:do|should|can) i (?:take|make|write)|"
    # Questions about words ("what does take note mean?", "the history of the Post-it note").
    r"what (?:does|do|did) .{1,40}\bmean\b|where (?:does|do|did) .{1,40}\bcome from\b|where'?s that (?:from|come from)|"
    r"the (?:phrase|expression|saying|idiom)\b|(?:history|origins?|etymology) of\b|worth noting|"
    # The user's own notes on paper, and "note" as tone ("I wrote myself a note but lost it",
    # "that's a nice note to end on").
    r"\bi (?:wrote|left|scribbled|stuck|made) (?:myself |me )?a (?:note|post-it|sticky)\b|note to end on|"
    r"\bon (?:a|an|that) (?:\w+ )?note\b|\b(?:nice|good|positive|high|sour|happy|sad|bright|low) note\b|"
    # A long list as a figure of speech ("I've got a list as long as my arm of things to fix").
    r"\bas long as (?:my|your|his|her|our|their) arm\b|\ba mile long\b|"
    # Sums ("can you add up 45, 17 and 8?").
    r"add (?:up|together)\b|add \d|"
    # Saving money, not a note ("I saved fifty dollars on groceries", "trying to save up for a bike").
    r"sav(?:e|ed|es|ing)\s+(?:up\b|(?:enough |some |more |a (?:bit|lot) of )?(?:money|cash)\b|"
    r"(?:about |over |nearly |almost |like )?(?:[$\u00a3\u20ac]\s?\d|\d[\d,.]*\s*(?:dollars|bucks|quid|pounds|euros)|"
    r"(?:five|ten|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|a hundred|hundreds|a few|a couple)\s+"
    r"(?:dollars|bucks|quid|pounds|euros))))",
    re.I)


@dataclass(frozen=True)
class Intent:
    tool: str
    arguments: dict[str, Any]
    overrulable: bool = field(default=False, compare=False)  # found by an ambiguous rule


_TRAILING = re.compile(r"(?:(?:^|\s+)(?:again|please|now|for me|then|thanks|thank you))+$", re.I)


def _clean(text: str | None) -> str:
    """Words without edge punctuation or a trailing "again" / "please" (no title ends so)."""
    return _TRAILING.sub("", (text or "").strip(" .,!?;:\"'")).strip(" .,!?;:\"'")


# Whisper tiny hears the tests' and many users' "note" as "node" ("add that to my plumber node",
# "get rid of that node"); after "my", "that" or "this" (a word between allowed) it is the note.
_NODE = re.compile(r"\b(?P<lead>(?:my|that|this|your)\s+(?:[\w'-]+\s+)?)node(?P<s>s?)\b", re.I)


def heard_right(text: str) -> str:
    """`text` with the notes words Whisper tends to mishear put back."""
    return _NODE.sub(lambda m: f"{m.group('lead')}note{m.group('s')}", text)


def parse(text: str) -> Intent | None:
    """The notes tool call this sentence asks for, or None for plain chat."""
    sentence = _FILLER.sub("", heard_right(text.strip()))
    return decide(sentence, classifier().probabilities(sentence))


def decide(sentence: str, probabilities: dict[str, float], threshold: float = THRESHOLD) -> Intent | None:
    """The call for a sentence, given the trained classifier's probabilities for it.

    The patterns come first: when one matches, its groups give exact arguments; a match
    by an ambiguous rule is dropped when the classifier (`intent_model.py`) is sure the
    sentence is chat. A sentence no pattern knows is the classifier's to call, and its
    arguments are then taken from the sentence's shape (`arguments_from_shape`).
    """
    if NOT_A_REQUEST.search(sentence):
        return None
    intent = by_pattern(sentence)
    if intent is not None:
        # A pattern's words can still be chat ("remind me how tides work"): the classifier,
        # which weighs the whole sentence, may overrule it when it is sure.
        return None if intent.overrulable and probabilities[CHAT] >= VETO else intent
    tool = max(probabilities, key=probabilities.__getitem__)
    if tool == CHAT or (probabilities[tool] < threshold and probabilities[CHAT] >= SURELY_NOT_CHAT):
        return None
    return arguments_from_shape(tool, sentence)


def by_pattern(sentence: str) -> Intent | None:
    """The tool call a pattern recognises in this sentence, or None."""
    for index, (tool, pattern) in enumerate(PATTERNS):
        match = pattern.search(sentence)
        if not match:
            continue
        groups = {k: _clean(v) for k, v in match.groupdict().items() if v is not None}
        if groups.get("title") and match.end("title") == match.end():
            groups["title"] = _whole_title(sentence, match.start("title"))
        title = groups.get("title", "")
        only_latest = bool(_ONLY_LATEST.match(title))  # "in my most recent note": which note, not its name
        latest = "latest" in groups or only_latest
        title = "" if only_latest else title
        ambiguous = index in _AMBIGUOUS
        if tool == "create_note":
            body = groups.get("body", "")
            if not body and not title:
                continue  # "make a note" alone: let the model ask what to write
            return Intent(tool, {"title": title or auto_title(body), "body": body or title}, ambiguous)
        if tool == "search_notes":
            query = groups.get("query", "")
            return Intent(tool, {"query": query}, ambiguous) if query else None
        if tool == "update_note":
            body = _ADD_VERB.sub("", groups.get("said") or groups.get("body", ""))
            return Intent(tool, {"title": title, "latest": latest or not title, "body": body}, ambiguous)
        if tool in ("read_note", "delete_note"):
            if not title and not latest:
                latest = True  # "delete that note", "read it back": the one just saved
            return Intent(tool, {"title": title, "latest": latest}, ambiguous)
        return Intent(tool, {}, ambiguous)
    return None


# A title that ends a pattern ("scrap the note called old addresses, please") is matched
# word by word: it runs on to the end of its clause, up to four words, and stops before
# words that start something else ("...the gym timetable in it").
_TITLE_RUN = re.compile(r"[\w'&-]+(?: (?!(?:in|on|at|for|from|with|to|please|i|it|that|which|because|so|and|but|"
                        r"now|then|thanks|again|as|since|if|or)\b)[\w'&-]+){0,3}", re.I)
_ONLY_LATEST = re.compile(rf"^(?:the |my )?(?:{_LATEST}|one i just (?:made|wrote|saved))$", re.I)
_ADD_VERB = re.compile(r"^(?:also\s+)?(?:add|put|include|write|append)\s+(?:that\s+)?", re.I)


def _whole_title(sentence: str, start: int) -> str:
    """The title that starts at `start`, to the end of its clause (at most four words)."""
    run = _TITLE_RUN.match(sentence, start)
    return _clean(run.group(0)) if run else ""


# For a request the classifier found: the words after the request's lead-in.
_LEAD = re.compile(r"^.{0,60}?\b(?:that|saying|says|reading|:|to say|down|of|about|is)\s+(?P<rest>.+)$", re.I)
_TOPIC = re.compile(r"\b(?:about|mentioning|mentions?|regarding|on|for|with|called|named|titled|re)\s+"
                    r"(?:the\s+|my\s+|a\s+|an\s+)?(?P<topic>[^.?!,]+)", re.I)
_NAMED = re.compile(r"\b(?:the|my|that|this|your)\s+(?P<title>[\w'&-]+(?: [\w'&-]+){0,2}?)\s+"
                    r"(?:note|memo|list|entry)\b", re.I)
_LATEST_WORD = re.compile(rf"\b{_LATEST}\b|\bjust\b", re.I)
_INTO_NOTE = re.compile(r"\s+(?:to|on|onto|in|into)\s+(?:the|my|that|this)\b[^.!?]*?\b(?:note|memo|list)s?\s*[.!?]?$",
                        re.I)
_LEADING_THAT = re.compile(r"^that\s+", re.I)
_LEADING_CONJUNCTION = re.compile(r"^(?:and|but|so|then|plus)\s+", re.I)
_ADDITION = re.compile(r"\b(?:add|append|put|include|stick|insert|tack|say|says|mention)\s+(?P<body>.+?)"
                       r"(?:\s+(?:to|on|onto|in|into)\s+(?:the|my|that|this)\b.*)?[.!?]?$", re.I)

_WORDS = re.compile(r"[a-z0-9']+")  # digits too: "4512" is something to look for
# The words of a request to search the notes that name nothing to look for.
_SEARCH_WORDS = {"search", "searching", "look", "through", "in", "into", "check", "go", "scan", "find", "my", "the",
                 "all", "notes", "note", "can", "could", "would", "will", "you", "please", "is", "are", "there",
                 "anything", "something", "do", "i", "have", "a", "me", "for", "of"}
SEARCH_QUESTION = "What should I look for in your notes?"
_NEVER_MIND = re.compile(r"^(?:oh\s+)?(?:never\s*mind|nothing|forget it|no(?:\s+thanks)?|cancel|nope|skip it|"
                         r"don't bother|it doesn't matter)\b", re.I)
_FOR_LEAD = re.compile(r"^(?:(?:look|search)\s+)?(?:for|about|anything about|something about|the word|notes? about|"
                       r"mentions? of)\s+", re.I)
# An answer that asks or bids something else (a question, another tool's request: "Check my order 4512").
_ASKS = re.compile(r"^(?:what|who|whom|whose|where|when|why|how|which|is|are|was|were|can|could|do|does|did|"
                   r"will|would|should|shall|tell|give|let's|let|check|book|call|set|add|delete|remove|remind|"
                   r"transfer|send|get|make|take|put|schedule|play|order|turn|show|read|list|save|write|i)\b", re.I)
SEARCH_ANSWER_WORDS = 6  # a longer answer is more than a thing to look for: the model's to answer


def search_query(answer: str) -> str:
    """What to search the notes for, from the user's answer to SEARCH_QUESTION ("For mother." ->
    "mother"); "" when they let it go ("Never mind.") or say something else ("What's the weather?")."""
    text = _clean(answer)
    if not text or _NEVER_MIND.match(text):
        return ""
    query = _clean(_FOR_LEAD.sub("", text))
    if query == text and (answer.strip().endswith("?") or _ASKS.match(text)
                          or len(text.split()) > SEARCH_ANSWER_WORDS):
        return ""
    return query


def arguments_from_shape(tool: str, sentence: str) -> Intent:
    """Arguments for a tool the classifier chose, taken from the sentence's shape."""
    latest = bool(_LATEST_WORD.search(sentence))
    named, topic_match = _NAMED.search(sentence), _TOPIC.search(sentence)
    title = _clean(named.group("title")) if named else ""
    topic = title or (_clean(topic_match.group("topic")) if topic_match else "")
    if tool == "create_note":
        lead = _LEAD.match(sentence)
        # "Dot down that my passport expires" (a misheard "jot"): the note is what follows "that".
        body = _clean(_LEADING_THAT.sub("", lead.group("rest") if lead else sentence))
        return Intent(tool, {"title": auto_title(body), "body": body})
    if tool == "search_notes":
        # "Search my notes." names nothing to look for: the query is left empty, and the router
        # asks for it (search_query) instead of searching for the request's own words.
        said = topic or _clean(sentence)
        return Intent(tool, {"query": "" if set(_WORDS.findall(said.lower())) <= _SEARCH_WORDS else said})
    if tool == "update_note":
        addition = _ADDITION.search(sentence)
        # Without an "add" verb (misheard as "and", "put" as "but", or left out) the words before
        # "to my ... note", without the conjunction the verb became.
        body = _clean(addition.group("body") if addition else
                      _LEADING_CONJUNCTION.sub("", _INTO_NOTE.sub("", sentence)))
        return Intent(tool, {"title": title, "latest": not title, "body": body})
    if tool in ("read_note", "delete_note"):
        title = "" if latest else topic
        return Intent(tool, {"title": title, "latest": latest or not title})
    return Intent(tool, {})


def speak_result(tool: str, result: dict[str, Any]) -> str:
    """A short spoken sentence for a tool's result."""
    if not result.get("ok"):
        if result.get("error") == "no such note":
            return "Sorry, I couldn't find that note."
        if result.get("error") == "no notes yet":
            return "You don't have any notes yet."
        return f"Sorry, I couldn't do that: {result.get('error', 'something went wrong')}."
    if tool == "create_note":
        # What was saved, when it is short: the title alone is often the text's first words
        # cut off ("I saved your note the plumber is coming"), which the user cannot check.
        body = str(result.get("body") or "").strip().rstrip(".!?")
        title = str(result.get("title") or "")
        named = title and title != auto_title(body)  # the user gave it a name: say it
        if body and len(body.split()) <= SPOKEN_BODY_WORDS:
            return f"Done. I saved your note called {title}: {body}." if named else f"Done. I saved a note: {body}."
        return f"Done. I saved your note called {title}."
    if tool in ("list_notes", "search_notes"):
        titles = [n["title"] for n in result.get("notes", [])]
        if not titles:
            return ("You don't have any notes yet." if tool == "list_notes"
                    else f"None of your notes mention {result.get('query', 'that')}.")
        count = f"{len(titles)} note{'s' if len(titles) != 1 else ''}"
        lead = f"You have {count}" if tool == "list_notes" else f"I found {count}"
        return f"{lead}: {', '.join(titles)}."
    if tool == "read_note":
        return f"Your note called {result.get('title', '')} says: {_spoken(result.get('body')) or 'nothing yet'}."
    if tool == "update_note":
        return f"Done. Your note called {result.get('title', '')} now says: {_spoken(result.get('body'))}."
    if tool == "delete_note":
        return f"Done. I deleted your note called {result.get('title', '')}."
    return "Done."


def _spoken(body: Any) -> str:
    """A note's text as one spoken line: its lines (each addition is one) joined as sentences."""
    lines = [line.strip().rstrip(".;,") for line in str(body or "").splitlines() if line.strip()]
    return ". ".join(lines[:1] + [line[:1].upper() + line[1:] for line in lines[1:]])
