"""Log formatters: plain lines, or one JSON object per line (LOG_FORMAT=json).

Either way a log line is one line: control characters in a message (a
decoded URL path, a user's words) are escaped, so nobody can forge a line.
JSON escapes them by itself; PlainFormatter does it here.

For the JSON lines:

python-json-logger does the JSON; this adds the line's `[Prefix]` as a
`component` field ("VoiceSession", "DailyRoom", "BotJoin") so log stores can
filter on it, and keeps whatever `extra=` a call passed (userId, roomUrl,
sessionId, latencyMs: see voicesessions/logctx.py).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter

PREFIX = re.compile(r"^\[(VoiceSession|DailyRoom|BotJoin)\]\s*")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\x1b, \\u2028)."""
    def one(match: re.Match) -> str:
        char = match.group()
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
    return CONTROL.sub(one, text)


class PlainFormatter(logging.Formatter):
    """The plain format, with control characters in the message escaped (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class VoiceJsonFormatter(JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        match = PREFIX.match(log_record.get("message", ""))
        if match:
            log_record["component"] = match.group(1)
        request = log_record.get("request")
        if request is not None:
            # django.request passes the request object: its repr carries the query string,
            # the one part of a URL that could hold a secret. Keep method and path only.
            log_record["request"] = {"method": getattr(request, "method", None), "path": getattr(request, "path", None)}
