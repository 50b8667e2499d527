"""Notes intents in plain words, for models too small to call tools.

The LLM shipped for the offline default (SmolLM2-135M) ignores tool
definitions, so on that path a user's notes request is recognised here and
turned into a real tool call; everything else goes to the LLM as chat.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TITLE = r"(?:called|named|titled|about|on)\s+(?:the\s+)?[\"']?(?P<title>[\w' -]+?)[\"']?"
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("create_note", re.compile(r"\b(?:create|make|add|take|write|new)\b.*\bnote\b.*?" + _TITLE
                               + r"(?:\s*[:,]\s*|\s+(?:saying|that says|with the text|with text|to say)\s+)"
                               r"(?P<body>.+?)[.!?]?$", re.I)),
    ("create_note", re.compile(r"\b(?:take|make|write|add) a note\b\s*(?:that|saying|:|,)?\s*(?P<body>.+?)[.!?]?$",
                               re.I)),
    ("list_notes", re.compile(r"\b(?:list|show|what|which|how many|read)\b.*\bnotes\b", re.I)),
    ("read_note", re.compile(r"\b(?:read|open|show)\b.*\bnote\b.*?" + _TITLE + r"[.!?]?$", re.I)),
    ("read_note", re.compile(r"\bwhat does (?:the|my) (?P<title>[\w' -]+?) note say\b", re.I)),
]


@dataclass(frozen=True)
class Intent:
    tool: str
    arguments: dict[str, Any]


def parse(text: str) -> Intent | None:
    """The notes tool call this sentence asks for, or None for plain chat."""
    sentence = text.strip()
    for tool, pattern in PATTERNS:
        match = pattern.search(sentence)
        if not match:
            continue
        groups = {k: (v or "").strip(" .,!?") for k, v in match.groupdict().items()}
        if tool == "create_note":
            body = groups.get("body", "")
            title = groups.get("title") or " ".join(body.split()[:5])
            return Intent(tool, {"title": title, "body": body})
        if tool == "read_note":
            return Intent(tool, {"title": groups.get("title", "")})
        return Intent(tool, {})
    return None


def speak_result(tool: str, result: dict[str, Any]) -> str:
    """A short spoken sentence for a tool's result."""
    if not result.get("ok"):
        return f"Sorry, I couldn't do that: {result.get('error', 'something went wrong')}."
    if tool == "create_note":
        return f"Done. I saved your note {result.get('title', '')}."
    if tool == "list_notes":
        titles = [n["title"] for n in result.get("notes", [])]
        if not titles:
            return "You don't have any notes yet."
        return f"You have {len(titles)} note{'s' if len(titles) != 1 else ''}: {', '.join(titles)}."
    if tool == "read_note":
        return f"Your note {result.get('title', '')} says: {result.get('body') or 'nothing yet'}."
    return "Done."
