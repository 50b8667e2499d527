"""The API's error exception, apart from errors.py so the request parser can raise it
(errors.py imports DRF's views, which import the parser classes)."""
from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions


class ApiError(exceptions.APIException):
    """An error with a code, a status and optionally the fields at fault."""

    def __init__(self, code: str, detail: str, *, status_code: int = 400,
                 fields: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields
        self.extra_headers = headers or {}


def too_large() -> ApiError:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return ApiError("too_large", f"The request body is larger than {limit} bytes.", status_code=413,
                    fields={"body": [f"at most {limit} bytes"]})


def field_error(field: str, message: str, *, code: str = "invalid", status_code: int = 400) -> ApiError:
    return ApiError(code, message, status_code=status_code, fields={field: [message]})
