"""A provider's failure as the user hears of it: our own code and plain words, never its text.

Hosted providers' error messages are not for users: OpenAI's 401 quotes a masked
prefix and suffix of the key, its 429 names the organisation. Pipecat already
sorts each failure into an `ErrorCategory` (from the HTTP status or the
exception); this maps the stage and category to a stable code such as
`llm_auth_failed` and a sentence, and keeps the provider's own text for the
server log, redacted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import ErrorFrame
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.security.redaction import redact_secrets

STAGE_NAMES = {"stt": "speech recognition", "llm": "language model", "tts": "speech synthesis",
               "pipeline": "voice pipeline"}
CATEGORY_CODES: dict[ErrorCategory, tuple[str, str]] = {
    ErrorCategory.AUTHENTICATION: ("auth_failed", "The {name} service refused this server's credentials."),
    ErrorCategory.AUTHORIZATION: ("forbidden", "The {name} service refused access to this server's account."),
    ErrorCategory.RATE_LIMIT: ("rate_limited", "The {name} service is busy. Please try again in a moment."),
    ErrorCategory.QUOTA: ("quota_exceeded", "The {name} service's quota for this server is used up."),
    ErrorCategory.CONNECTIVITY: ("unreachable", "The {name} service did not answer in time."),
    ErrorCategory.SERVER: ("provider_error", "The {name} service had an error."),
    ErrorCategory.INVALID_REQUEST: ("rejected", "The {name} service rejected this server's request."),
}
OTHER = ("failed", "Something went wrong in the {name}.")
CUT_TOOL_CALL = ("tool_call_cut", "The {name} ran out of room before it finished using a tool, so nothing was "
                 "done. Please ask again.")


# 400s that refuse one turn's content, not the request's shape: the next turn may be served.
TURN_REFUSALS: dict[str, tuple[str, str]] = {
    # Azure OpenAI's content filter (code "content_filter", or its innererror's).
    "content_filter": ("refused", "The {name} would not answer that. Please ask another way."),
    # Groq: the model's tool call did not parse ("Failed to call a function").
    "tool_use_failed": ("tool_call_failed", "The {name} could not use a tool for that. Please ask again."),
}


def turn_refusal(exception: BaseException | None) -> str | None:
    """The TURN_REFUSALS code of a provider's 400 that refused only this turn, else None."""
    if getattr(exception, "status_code", None) != 400:
        return None
    body = getattr(exception, "body", None)
    codes = [getattr(exception, "code", None)]
    if isinstance(body, dict):
        codes += [body.get("code"), (body.get("innererror") or {}).get("code")]
        inner = body.get("error")
        if isinstance(inner, dict):
            codes += [inner.get("code"), (inner.get("innererror") or {}).get("code")]
    for code in codes:
        if code in TURN_REFUSALS:
            return code
        if code == "ResponsibleAIPolicyViolation":
            return "content_filter"
    return None


class ToolCallCut(Exception):
    """The token limit cut a tool call's arguments, so the call was not run (the tool's name)."""

# What Pipecat's redaction leaves of a provider's text that still names an account:
# OpenAI's masked keys ("sk-proj-****...abcd"), organisation and project ids.
_ACCOUNT = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_*\-.]{3,}|\borg-[A-Za-z0-9]{4,}|\bproj_[A-Za-z0-9]{4,}")


@dataclass(frozen=True)
class ProviderError:
    """What the user is told: which stage failed, a stable code, plain words, and whether the session ends."""

    stage: str
    code: str
    message: str
    fatal: bool
    retry_after: float | None = None

    def payload(self) -> dict[str, Any]:
        """The `voice.error` payload."""
        body: dict[str, Any] = {"code": self.code, "stage": self.stage, "message": self.message, "fatal": self.fatal}
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        return body


def redact(text: str) -> str:
    """`text` for the server log: secrets and account ids masked."""
    return _ACCOUNT.sub(lambda m: m.group(0).split("-")[0].split("_")[0] + "-***", redact_secrets(text))


def stage_of(processor: Any) -> str:
    """Which stage a failing processor is: stt, llm, tts (or pipeline for anything else)."""
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    for stage, kind in (("stt", STTService), ("llm", LLMService), ("tts", TTSService)):
        if isinstance(processor, kind):
            return stage
    return "pipeline"


def retry_after(exception: BaseException | None) -> float | None:
    """The seconds a provider asked us to wait (the Retry-After header of its answer), if it said."""
    response = getattr(exception, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def category_of(frame: ErrorFrame) -> ErrorCategory:
    """Pipecat's category, with the OpenAI SDK's timeouts and refused connections as connectivity
    (Pipecat knows only the standard library's: the SDK's own classes carry no status code)."""
    import httpx
    import openai

    category = frame.category or ErrorCategory.UNKNOWN
    if category is ErrorCategory.UNKNOWN and isinstance(frame.exception, (openai.APIConnectionError,
                                                                         httpx.TransportError)):
        return ErrorCategory.CONNECTIVITY
    return category


def describe(frame: ErrorFrame) -> ProviderError:
    """The user's view of one ErrorFrame."""
    stage = stage_of(frame.processor)
    category = category_of(frame)
    refusal = turn_refusal(frame.exception)
    if isinstance(frame.exception, ToolCallCut):
        code, message = CUT_TOOL_CALL
    elif refusal is not None:
        code, message = TURN_REFUSALS[refusal]
    else:
        code, message = CATEGORY_CODES.get(category, OTHER)
    name = STAGE_NAMES[stage]
    fatal = bool(frame.fatal) or (category.is_permanent and refusal is None)
    return ProviderError(stage=stage, code=f"{stage}_{code}", message=message.format(name=name),
                         fatal=fatal, retry_after=retry_after(frame.exception))
