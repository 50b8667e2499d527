"""An assistant's custom HTTP tools: the model calls them, the call is a signed POST.

Each call sends the tool's endpoint a JSON body with the arguments and the session's
context, signed with the tool's secret (`X-Voice-Signature`, assistants/signing.py),
within the tool's timeout per attempt and its bounded retries (no answer, 5xx, 429;
a 4xx is final). The endpoint's answer goes back to the model as the tool's result,
and the model speaks it; a failure goes back as a short error the model is told to
apologise for, so the user hears a polite sentence, and it is logged. While the endpoint
works, the user hears the tool's start message ("One moment."), as on a hosted platform.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.services.llm_service import FunctionCallParams, LLMService

from assistants.signing import HEADER, sign

logger = logging.getLogger("voicebot.tools")
MAX_RESULT_CHARS = 4000  # what the model is given of an answer (a long page would crowd its context out)
BACKOFF_SECONDS = 0.5  # before the first retry; doubled for each one after it


@dataclass(frozen=True)
class HttpTool:
    """One custom tool, as the job carries it plus the secret the worker read from the database."""

    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    timeout: float
    retries: int
    secret: str = field(repr=False)
    start_message: str = ""  # said as a call starts (AssistantTool.start_message); blank: nothing

    @property
    def schema(self) -> FunctionSchema:
        params = self.parameters or {}
        return FunctionSchema(name=self.name, description=self.description,
                              properties=params.get("properties", {}), required=params.get("required", []))


def load(specs: list[dict[str, Any]]) -> list[HttpTool]:
    """The job's tools with their secrets (blocking ORM). A tool removed since the join is skipped."""
    if not specs:
        return []
    from assistants.models import AssistantTool

    secrets = dict(AssistantTool.objects.filter(pk__in=[s["id"] for s in specs], enabled=True)
                   .values_list("pk", "secret"))
    return [HttpTool(name=s["name"], description=s["description"], parameters=s.get("parameters") or {},
                     url=s["url"], timeout=float(s.get("timeoutSeconds", 10)), retries=int(s.get("retries", 1)),
                     secret=secrets[s["id"]], start_message=s.get("startMessage", ""))
            for s in specs if s["id"] in secrets]


def register(llm: LLMService, tools: list[HttpTool], *, context: dict[str, Any], http: Any,
             announce: Callable[[str], Awaitable[None]] | None = None) -> None:
    """Bind each tool's handler to this session (`context`: sessionId, userId, assistant).

    `announce` speaks a tool's start message as its call begins: the endpoint's answer and the
    model's words after it take seconds (a local model reads the answer before it speaks).
    """
    for tool in tools:
        async def run(params: FunctionCallParams, tool: HttpTool = tool) -> None:
            if tool.start_message and announce is not None:
                await announce(tool.start_message)
            result = await call(tool, dict(params.arguments or {}), context=context, http=http,
                                tool_call_id=params.tool_call_id)
            await params.result_callback(result)

        # A call the user talked over still completes: the endpoint may have acted on it.
        llm.register_function(tool.name, run, cancel_on_interruption=False)


class _Retry(Exception):
    """An attempt that may succeed if tried again."""


async def call(tool: HttpTool, arguments: dict[str, Any], *, context: dict[str, Any], http: Any,
               tool_call_id: str = "") -> dict[str, Any]:
    """POST one call to the tool's endpoint; return what the model is given as the result."""
    body = json.dumps({"tool": tool.name, "toolCallId": tool_call_id, "arguments": arguments, **context,
                       "timestamp": dt.datetime.now(dt.timezone.utc).isoformat()}, separators=(",", ":")).encode()
    problem = ""
    for attempt in range(tool.retries + 1):
        if attempt:
            await asyncio.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
        # Signed per attempt: a retry after a slow failure still carries a fresh timestamp.
        headers = {"Content-Type": "application/json", HEADER: sign(tool.secret, body),
                   "Idempotency-Key": tool_call_id or "", "User-Agent": "voice-assistant-tools/1"}
        try:
            response = await asyncio.wait_for(http.post(tool.url, content=body, headers=headers), tool.timeout)
        except Exception as exc:  # noqa: BLE001 - a timeout or any transport failure: tried again
            problem = "no answer in time" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            logger.warning("[VoiceSession] tool %s attempt %s: %s", tool.name, attempt + 1, problem)
            continue
        if response.status_code >= 500 or response.status_code == 429:
            problem = f"HTTP {response.status_code}"
            logger.warning("[VoiceSession] tool %s attempt %s: %s", tool.name, attempt + 1, problem)
            continue
        if response.status_code >= 400:
            problem = f"HTTP {response.status_code}"
            break
        logger.info("[VoiceSession] tool %s answered %s", tool.name, response.status_code)
        return {"ok": True, "result": _result(response)}
    logger.warning("[VoiceSession] tool %s failed: %s", tool.name, problem)
    return {"ok": False, "error": f"The {tool.name} service could not be reached ({problem}).",
            "say": "Apologise briefly: that could not be done just now. Do not make up a result."}


def _result(response: Any) -> Any:
    """The endpoint's answer: its JSON (its `result` member if it has one), else its text, shortened."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:MAX_RESULT_CHARS]
    if isinstance(data, dict) and "result" in data:
        data = data["result"]
    text = json.dumps(data)
    return data if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]
