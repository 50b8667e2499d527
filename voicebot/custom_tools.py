"""An assistant's custom HTTP tools: the model calls them, the call is a signed POST.

Each call sends the tool's endpoint a JSON body with the arguments and the session's
context, signed with the tool's secret (`X-Voice-Signature`, assistants/signing.py),
within the tool's timeout per attempt and its bounded retries (no answer, 5xx, 429;
a 4xx is final). The endpoint's answer goes back to the model as the tool's result,
and the model speaks it; a failure goes back as a short error the model is told to
apologise for, so the user hears a polite sentence, and it is logged.

What the user hears while a call runs is the tool's own, as on a hosted platform: its start
message as the call begins ("One moment."), its delayed message once the endpoint has been
slow for a while ("Sorry, this is taking a little longer."), and its failed and complete
messages, when it has them, instead of the model's words after a failure or an answer.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import FunctionCallResultProperties
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
    delayed_message: str = ""  # said once the endpoint has not answered after `delayed_after` seconds
    delayed_after: float = 4.0
    failed_message: str = ""  # said instead of the model's words after a failed call; blank: the model's
    complete_message: str = ""  # said instead of the model's words after an answer, its {names} filled in

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
                     secret=secrets[s["id"]], start_message=s.get("startMessage", ""),
                     delayed_message=s.get("delayedMessage", ""),
                     delayed_after=float(s.get("delayedAfterSeconds", 4.0)),
                     failed_message=s.get("failedMessage", ""), complete_message=s.get("completeMessage", ""))
            for s in specs if s["id"] in secrets]


Announce = Callable[[str, str], Awaitable[None]]  # (text, kind): speak a tool's message to the user


def register(llm: LLMService, tools: list[HttpTool], *, context: dict[str, Any], http: Any,
             announce: Announce | None = None) -> None:
    """Bind each tool's handler to this session (`context`: sessionId, userId, assistant).

    `announce(text, kind)` speaks a tool's messages ("startMessage", "delayedMessage",
    "failedMessage", "completeMessage"): the endpoint's answer and the model's words after it
    take seconds (a local model reads the answer before it speaks), and a slow endpoint may
    take its timeout and a retry.
    """
    for tool in tools:
        async def run(params: FunctionCallParams, tool: HttpTool = tool) -> None:
            say = announce if announce is not None else _silent
            if tool.start_message:
                await say(tool.start_message, "startMessage")
            calling = asyncio.ensure_future(call(tool, dict(params.arguments or {}), context=context, http=http,
                                                 tool_call_id=params.tool_call_id))
            if tool.delayed_message:
                # asyncio.wait leaves the call running: only the wait ends.
                done, _ = await asyncio.wait({calling}, timeout=tool.delayed_after)
                if not done:
                    await say(tool.delayed_message, "delayedMessage")
            result = await calling
            own = own_words(tool, result)
            if own is not None:
                # At once, and the model is not asked: it would take seconds, and might word the answer
                # wrongly or invent one. The result still reaches it, for the turns after.
                await say(*own)
                await params.result_callback(result, properties=FunctionCallResultProperties(run_llm=False))
                return
            await params.result_callback(result)

        # A call the user talked over still completes: the endpoint may have acted on it.
        llm.register_function(tool.name, run, cancel_on_interruption=False)


def own_words(tool: HttpTool, result: dict[str, Any]) -> tuple[str, str] | None:
    """The tool's own words for `result` and their kind, instead of the model's: its failed message
    after a failure, its complete message filled in after an answer; None when it has none."""
    if not result.get("ok"):
        return (tool.failed_message, "failedMessage") if tool.failed_message else None
    complete = filled(tool.complete_message, result.get("result"))
    return (complete, "completeMessage") if complete else None


def filled(message: str, answer: Any) -> str:
    """`message` with each {name} replaced by the endpoint's answer's member of that name; "" when the
    message is blank or the answer lacks one (the model then words the answer itself, as without it)."""
    if not message:
        return ""
    from assistants.models import placeholders

    names = placeholders(message)
    values = answer if isinstance(answer, dict) else {}
    missing = [name for name in names if values.get(name) in (None, "")]
    if missing:
        logger.warning("[VoiceSession] a tool's complete message needs %s, which its answer lacks: the model "
                       "words the answer", ", ".join(missing))
        return ""
    return message.format_map({name: _spoken(values[name]) for name in names})


def _spoken(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_spoken(v) for v in value)
    return str(value)


async def _silent(text: str, kind: str) -> None:
    """No one to speak to (a session without a voice: the tests' pipelines)."""


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
