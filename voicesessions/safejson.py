"""JSON from untrusted clients, with a depth limit.

Python's parser recurses once per nesting level, so a 2 KB body of 1,000
nested arrays raises RecursionError (a 500) instead of a parse error. The
REST parser, the WebRTC view and the websocket all read JSON through here.
No body this service accepts nests deeper than a few levels.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JSONRejected(ValueError):
    """Not JSON, or JSON nested deeper than MAX_DEPTH."""


def loads(text: str | bytes) -> Any:
    """Parse `text`; raise JSONRejected with a sentence a client can act on."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:
        raise JSONRejected(f"JSON nested too deep (more than {MAX_DEPTH} levels).") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise JSONRejected(f"JSON parse error: {exc}") from exc
    if _depth(value) > MAX_DEPTH:
        raise JSONRejected(f"JSON nested too deep (more than {MAX_DEPTH} levels).")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # NaN, Infinity: Python's json accepts them, JSON does not


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
