"""Answers that claim an action no tool took, and what the assistant says instead.

With the router (the local default), the model never calls a tool: the router does,
before the model is asked. So when the router hears no request and the model still
answers "Sure, I'll write that down for you" or "I'll set an alarm for six", nothing was
saved or set, and the user would leave believing it was. Seen in the conversation bench:
Whisper heard "Jot down that my passport expires in March" as "dot down at my passport
x-pires in March", no notes tool ran, and Pearl said it would write it down.

`claimed` finds such a sentence before it is spoken (SentenceGate); `Offer` is what
is said instead: for a note, "I haven't saved that yet. Shall I save a note saying ...?",
and the user's "yes" on the next turn saves it (`agrees`); for anything else, that it
was not done.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .intents import Intent, arguments_from_shape

NOTE, ACT = "note", "act"
OFFER_MAX_WORDS = 20  # a longer note is offered without reading it all back

# Who is acting: the assistant, now or about to ("I'll", "I've", "Let me", "I'm going to"), with
# an optional "go ahead and", "also", "now" before the verb. "I'm" / "I am" only before an -ing
# verb ("I'm setting it", not "I'm sure").
_ADVERBS = r"(?:(?:go ahead and|also|now|quickly|definitely|gladly|certainly|just)\s+)*"
_WILL = r"\b(?:i(?:'ll| will|'ve| have|'m going to| am going to| just)|let me)\s+" + _ADVERBS
_DOING = r"\b(?:i'm|i am)\s+" + _ADVERBS
# Saving something for later: what the notes tools do. "dot" is Whisper's "jot", which the
# model echoes ("I'll dot down ..."); "<verb> (it|that|this) down" whatever the verb.
_NOTE_VERBS = (r"(?:write|wrote|written|jot|jotted|dot|note|noted|save|saved|record|recorded|store|stored|log|logged|"
               r"keep track|kept track|remember|make a note|made a note|take a note|took a note|taken a note|"
               r"(?:add|added|put) [\w' ,-]{1,40}? (?:to|on|in|into) your (?:[\w'-]+ )?(?:notes?|list|memo)|"
               r"put (?:it|that|this) (?:down|in)|"
               r"set (?:you )?a reminder|\w+ (?:it|that|this) down)\b")
_NOTE_DOING = (r"(?:writing|jotting|noting|saving|recording|storing|logging|keeping track|making a note|taking a note|"
               r"(?:adding|putting) [\w' ,-]{1,40}? (?:to|on|in|into) your (?:[\w'-]+ )?(?:notes?|list|memo)|"
               r"putting (?:it|that|this) (?:down|in))\b")
# Acting in the world: what only a tool could do, and no tool ran.
# A lookup is one too: "Sure, I'll look it up." was a whole answer on the conversation bench when the
# router missed "Can you check where my parcel is?" (heard "... my power solid is"), and the user was
# left waiting for a result that never came. Only the forms that promise a lookup ("look it up",
# "check on/for/that", "find out"): "let me explain", "you can look it up" are not claims.
_LOOKUP = (r"look (?:it|that|this|them|those) up|look up|look into|check (?:on|for|that|this|it|your|whether|if|with)|"
           r"checked|find out|found out|track (?:it|that|your)|locate")
_LOOKING = (r"looking (?:it |that |this )?(?:up|into)|checking (?:on|for|that|this|it|your|whether|if|with)|"
            r"tracking|locating")
_ACT_VERBS = (r"(?:set|book|booked|schedule|scheduled|send|sent|email|emailed|text|texted|call|called|order|ordered|"
              r"reserve|reserved|cancel|cancell?ed|transfer|transferred|connect|connected|pay|paid|buy|bought|"
              r"remind|reminded|turn(?:ed)? (?:on|off)|switch(?:ed)? (?:on|off)|" + _LOOKUP + r")\b")
_ACT_DOING = (r"(?:setting|booking|scheduling|sending|emailing|texting|calling|ordering|reserving|cancell?ing|"
              r"transferring|connecting|paying|buying|turning (?:on|off)|switching (?:on|off)|" + _LOOKING + r")\b")
# Sending the user to a tool by name: the user has no tools, the assistant's are its own, and none
# ran this turn. On the conversation bench Whisper heard "Can you check where my parcel is?" as
# "... my power solid is", no tool's check heard a request, and the model answered 'you can use the
# "Find Power Solid" tool. Please pro...' (2026-12-07). Only a tool named as one (in quotes, in
# capitals or as an identifier) counts: "use a multi tool" is advice.
_TOOL_NAME = r"(?:\"[^\"]{1,40}\"|\u201c[^\u201d]{1,40}\u201d|'[^']{1,40}'|[a-z]+(?:_[a-z]+)+|(?:[A-Z][\w'-]*\s+){1,5})"
_TOOL_TALK = re.compile(r"\b(?i:use|using|try|call|run|with|through|via) (?i:the|our|my|this|that|a|an)\s+"
                        + _TOOL_NAME + r"\s*(?i:tool|function)s?\b")
# "Noted!", "Got it, saved.": the claim with no subject at all, at the sentence's start.
_DONE = r"^(?:(?:ok(?:ay)?|sure|got it|done|all right|alright|perfect|great)[,!.]?\s+)?(?:noted|saved|written down|jotted down)\b"
_CLAIMS = ((NOTE, re.compile(f"{_WILL}{_NOTE_VERBS}|{_DOING}{_NOTE_DOING}|{_DONE}", re.I)),
           (ACT, re.compile(f"{_WILL}{_ACT_VERBS}|{_DOING}{_ACT_DOING}", re.I)),
           (ACT, _TOOL_TALK))
# Rhetoric, not a promise: "let me remind you that ...", "let me note that ...".
_RHETORIC = re.compile(r"\blet me (?:remind|note|just say)\b", re.I)


def claimed(sentence: str) -> str:
    """NOTE or ACT when `sentence` says the assistant did or will do something (or sends the user
    to a tool to do it), else ""."""
    text = _RHETORIC.sub("", sentence.strip())
    for kind, pattern in _CLAIMS:
        if pattern.search(text):
            return kind
    return ""


# What the assistant says instead of a claim no tool made good. After words already spoken
# ("Sure!") it begins "Actually, ..."; alone, a refusal begins "Sorry, ...".
CANNOT = "I can't do that from here."
ASK_AGAIN = "I haven't done that yet. Could you ask me again in other words?"
NO_NOTES = "I can't keep notes here, so nothing was saved."

# A plain yes to "Shall I save a note ...?" ("yes please", "sure, go ahead", "do it").
_YES = re.compile(r"^(?:(?:oh|um+|uh+|well|yes|yeah|yep|yup|sure|ok(?:ay)?|please|go ahead|do it|do that|save it|"
                  r"please do|absolutely|of course|definitely|that would be great|that'd be great|sounds good|"
                  r"correct|right|why not|go for it|yes please|thanks|thank you)[\s,.!]*)+$", re.I)
_NOT_YES = re.compile(r"^(?:(?:oh|um+|uh+|well|please|thanks|thank you|right)[\s,.!]*)+$", re.I)


def agrees(text: str) -> bool:
    """Whether the user's turn is a plain yes (nothing more asked, nothing changed)."""
    text = text.strip()
    return bool(_YES.match(text)) and not _NOT_YES.match(text)


@dataclass(frozen=True)
class Offer:
    """What to say instead of a false claim, and the call a "yes" to it makes (or None)."""

    spoken: str
    call: Intent | None = None


def offer(kind: str, request: str, *, can_save: bool, custom_tools: bool, after_words: bool = False) -> Offer:
    """What to say when the answer to `request` claimed a `kind` action and no tool ran.

    A note the assistant can save is offered back with what it would say, so the user
    hears what a "yes" saves; anything else is said not to be done. `after_words`: part of
    the answer was spoken before its claim.
    """
    said = _offer(kind, request, can_save=can_save, custom_tools=custom_tools)
    if after_words:
        return Offer(f"Actually, {said.spoken}", said.call)
    if said.spoken in (CANNOT, NO_NOTES):
        return Offer(f"Sorry, {said.spoken}", said.call)
    return said


def _offer(kind: str, request: str, *, can_save: bool, custom_tools: bool) -> Offer:
    if kind == NOTE:
        if not can_save:
            return Offer(NO_NOTES)
        call = arguments_from_shape("create_note", request)
        body = str(call.arguments.get("body") or "")
        if not body:
            return Offer(ASK_AGAIN if custom_tools else CANNOT)
        if len(body.split()) > OFFER_MAX_WORDS:
            return Offer("I haven't saved that yet. Shall I save it as a note?", call)
        return Offer(f"I haven't saved that yet. Shall I save a note saying: {body}?", call)
    return Offer(ASK_AGAIN if custom_tools else CANNOT)
