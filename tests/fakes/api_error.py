"""The error answer of OpenAI's API and the servers that copy its shape."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer in OpenAI's {"error": {message, type, param, code}} shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.extra: dict[str, Any] = {}  # a provider's own fields beside these (Groq's failed_generation...)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}
