"""The API's one request parser: DRF's JSONParser with a depth limit (see safejson)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from .. import safejson
from .apierror import ApiError, too_large


class LimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # DRF reads the raw stream, past Django's own body-size check: cap it here.
        raw = b"" if stream is None else stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise too_large()
        try:
            return safejson.loads(raw.decode(encoding))
        except (safejson.JSONRejected, UnicodeDecodeError) as exc:
            raise ApiError("parse_error", str(exc), fields={"body": [str(exc)]}) from exc

