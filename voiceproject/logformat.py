"""Structured (JSON) log lines, one object per line, for LOG_FORMAT=json.

python-json-logger does the JSON; this adds the seed's log prefix as a
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
