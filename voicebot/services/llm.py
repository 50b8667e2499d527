"""The LLM: Pipecat's OpenAILLMService, against a local llama.cpp server or a hosted API."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import uuid
from typing import Any

from openai import BadRequestError
from pipecat.frames.frames import FunctionCallFromLLM
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.utils.types import assert_given

from ..computegate import gate
from ..provider_errors import ToolCallCut
from .claims import agrees, offer
from .guards import (RepeatedAnswer, SentenceGate, alternate, earlier_answers, earlier_words, facts_ahead,
                     facts_spoken, tidy_spaces, tool_facts, window)
from .modelfiles import default_llm_path
from .intents import SEARCH_QUESTION, Intent, parse as parse_intent, search_query, speak_result
from .tool_router import ANSWER_START, CHECK_TOKENS, VERDICT_GRAMMAR, Card, CustomToolRouter, confidence, request_top

logger = logging.getLogger("voicebot.llm")

# The system prompt of an assistant that has none of its own.
# "Say the answer first": the voice starts at the first whole sentence or clause, and a first
# sentence that restates the question ("There are 60 minutes in an hour.") is most of the wait.
# On bench/llm_eval_set.json's 96 items it cut the tokens before the first words spoken from 9 to 7
# (p50) with the same accuracy (89/96): docs/benchmarks.md.
DEFAULT_PROMPT = ("You are a helpful voice assistant. Your words are spoken aloud, so answer in one or two "
                  "short, plain sentences without lists or markdown. Say the answer first, in a few words.")
MAX_REPLY_TOKENS = 100  # spoken replies: a sentence or two (the gate cuts at the last full sentence)
# What a model with tools may generate in one go: a tool call's JSON arguments (a note's
# whole body, say) must fit, or the provider cuts them and the call is lost. The spoken
# answer still ends within MAX_REPLY_TOKENS: the gate stops the stream there.
TOOL_TOKENS = 400
HISTORY_TOKENS = 1200  # the system prompt plus the latest turns that fit in this many tokens
# llama.cpp's own sampling guards against loops: a repetition penalty over the recent
# tokens, DRY ("don't repeat yourself") against repeated sequences, and the prompt cache
# kept across turns. Sent only to the local server; hosted APIs refuse unknown fields.
# DRY's sequence breakers are only the newline: llama.cpp matches every breaker against
# the whole vocabulary (152k tokens for Qwen) at each request, and its default four
# ("\n", ":", '"', "*", there for structured text that spoken answers are not) cost
# ~40 ms of every request's first token against ~12 ms (docs/benchmarks.md).
LOCAL_SAMPLING: dict[str, Any] = {"repeat_penalty": 1.1, "repeat_last_n": 256, "dry_multiplier": 0.8,
                                  "dry_base": 1.75, "dry_allowed_length": 2, "dry_sequence_breakers": ["\n"],
                                  "cache_prompt": True}
RETRY_SAMPLING: dict[str, Any] = {"repeat_penalty": 1.3}
# An answer to a tool's facts may not begin "Yes" or "No" (llama.cpp's logit_bias by string: those
# tokens banned). Asked "Will it be cold in Oslo tomorrow?" with "mild, 14 degrees", the small model
# committed to "Yes" at its first token and then followed it ("Yes, it will be cold"); made to begin
# with the subject it states the fact ("It will not be cold in Oslo tomorrow."). bench_tool_facts.py:
# 90 -> 94% of 78 answers right, 86 -> 94% where the tool's answer contradicts the question.
FACTS_SAMPLING: dict[str, Any] = {"logit_bias": [["Yes", False], ["No", False]]}
RETRY_HINT = "Never repeat an earlier answer: answer the user's last message directly, in new words."
LOOPING = "Sorry, I'm going round in circles. Could you ask me that another way?"


# Hosted models that reason before they answer: OpenAI's o-series and gpt-5 (not its chat model),
# and the open gpt-oss as Groq or vLLM serve it. Their reasoning counts against the completion cap, so
# a voice answer's 100 tokens, or a tool check's 80, can be used up before the first word: the answer
# comes back empty, finish_reason "length" (OpenAI's reasoning guide). Such a model gets
# VOICE_LLM_REASONING_TOKENS more room and VOICE_LLM_REASONING_EFFORT.
REASONING_MODEL = re.compile(r"(^|/)(o\d|gpt-5(?!-chat)|gpt-oss)")


def reasoning_options(model: str) -> dict[str, Any]:
    """VoiceLLMService's `reasoning_tokens` and `reasoning_effort` for a hosted `model`: the settings'
    for one that reasons (REASONING_MODEL), nothing for any other."""
    from django.conf import settings

    if not REASONING_MODEL.search(model):
        return {}
    return {"reasoning_tokens": settings.VOICE_LLM_REASONING_TOKENS,
            "reasoning_effort": settings.VOICE_LLM_REASONING_EFFORT}


LOCAL_SLOTS = 4  # llama.cpp's parallel slots: one per concurrent session of a worker


def pinned(slot: int | None) -> dict[str, int]:
    """The request field that sends a llama.cpp request to `slot` (none: the server picks)."""
    return {"id_slot": slot} if slot is not None else {}


class SlotPool:
    """The local llama.cpp server's slots, one lent to each live session (`id_slot` on its requests).

    Unpinned, llama.cpp gives a request the idle slot whose cache matches it best. A withdrawn
    answer's request keeps its slot busy until the server notices the client has gone, and the
    session's next request, sent at once, then went to another slot holding none of the
    conversation: 716 tokens read again, 10.9 s to the first word (conversation bench,
    2026-12-07). Pinned, the request waits for its own slot (llama.cpp defers a task whose slot
    is busy), a few hundred milliseconds at most. A session beyond the pool's size goes unpinned.
    """

    def __init__(self, size: int = LOCAL_SLOTS) -> None:
        self._free = list(range(size))
        self._lock = threading.Lock()  # used on the worker's loop today; safe from threads too, at no cost

    def acquire(self) -> int | None:
        """The lowest free slot, or None when every slot is lent."""
        with self._lock:
            return self._free.pop(0) if self._free else None

    def release(self, slot: int | None) -> None:
        with self._lock:
            if slot is not None and slot not in self._free:
                self._free.append(slot)
                self._free.sort()


CHECK_TIMEOUT = 15.0  # seconds a custom-tool check may take (tool_router.py) before the turn is chat
# What a hosted custom-tool check asks for beyond the answer: a steady answer and the probability
# of "true" (tool_router.BARE_CONFIDENCE). A server may refuse each (Groq refuses logprobs, OpenAI's
# reasoning models both): the session then asks without it (`_check_tool`).
HOSTED_CHECK_OPTIONS = {"temperature": 0, "logprobs": True, "top_logprobs": 5}
READ_AHEAD_WAIT = 5.0  # seconds a turn waits for the notes exchange's read-ahead before it asks anyway
# A routed call the same as the one before (tool and arguments) within this many seconds is not made
# again: on the conversation bench Whisper's late "Lean." after "I would like to talk to a real
# person." came as a second turn of the same words, and the transfer was requested twice.
DUPLICATE_CALL_SECONDS = 10.0


# Pipecat's own class for each OpenAI-compatible server (VOICE_LLM_FLAVOR), and whether
# the server takes tool definitions: Ollama's depends on the model, so a refusal makes
# the session fall back to the notes router (refuses_tools) rather than being assumed.
FLAVORS = {"openai": ("pipecat.services.openai.llm", "OpenAILLMService"),
           "ollama": ("pipecat.services.ollama.llm", "OLLamaLLMService"),
           "groq": ("pipecat.services.groq.llm", "GroqLLMService"),
           "azure": ("pipecat.services.azure.llm", "AzureLLMService")}


def llm_class(flavor: str = "openai") -> type:
    """VoiceLLMService on top of Pipecat's class for `flavor`: our guards, the server's own quirks
    (Ollama's missing developer role, Groq's parameters, Azure's endpoints and api-version)."""
    import importlib

    if flavor == "openai":
        return VoiceLLMService
    module, name = FLAVORS[flavor]
    base = getattr(importlib.import_module(module), name)
    return type(f"Voice{name}", (VoiceLLMService, base), {"__doc__": f"VoiceLLMService over Pipecat's {name}."})


def refuses_tools(error: BadRequestError) -> bool:
    """Whether a 400 says the model takes no tools (Ollama: "<model> does not support tools")."""
    return "does not support tools" in str(error.message).lower()


class AnswerComplete(Exception):
    """The spoken answer reached its budget, or claimed an action (claims.py): the rest is not wanted."""


def compose_prompt(system_prompt: str, persona: str = "") -> str:
    """A session's system prompt: its assistant's (or the default), named by its persona."""
    prompt = system_prompt or DEFAULT_PROMPT
    return f"Your name is {persona}. {prompt}" if persona else prompt


def start_local_server(path: str | None = None, *, parallel: int = LOCAL_SLOTS, threads: int = 0) -> tuple[Any, str]:
    """Start llama.cpp's OpenAI-compatible server in this process, on loopback.

    xllamacpp ships llama.cpp prebuilt (no compiler step at install); its
    server gives Pipecat's own OpenAI service something to talk to, so the
    offline and hosted paths share one client.
    """
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = path or str(default_llm_path())
    params.n_parallel = parallel  # one slot per concurrent session
    params.n_ctx = 2048 * parallel
    threads = threads or min(2, os.cpu_count() or 1)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.sampling.temp = 0.2
    params.verbosity = 1  # llama.cpp's per-request info lines would flood the worker's log
    server = xlc.Server(params)
    return server, server.listening_address.rstrip("/") + "/v1"


class VoiceLLMService(OpenAILLMService):
    """OpenAILLMService for spoken answers that stay sane over a long call.

    Every model gets the guards of `guards.py`: a history window within a token
    budget, answers spoken in whole sentences, and a check for an answer the
    assistant already gave (the model is asked once more with a stronger
    repetition penalty; a second repeat is dropped). The local model
    (`local`) also gets llama.cpp's sampling guards and sees tool results as
    facts rather than as earlier answers; with `notes_router`, a user turn that
    asks for notes becomes a real tool call (the same FunctionCall frames, events
    and context entries a capable model would produce), and the tool's result is
    spoken from a template.
    """

    def __init__(self, *, base_url: str, api_key: str, model: str, system_prompt: str,
                 notes_router: bool, local: bool | None = None, history_tokens: int = HISTORY_TOKENS,
                 reply_tokens: int = MAX_REPLY_TOKENS, tool_tokens: int = TOOL_TOKENS, timeout: float = 60.0,
                 connect_timeout: float = 5.0, http_client: Any = None, max_retries: int = 0,
                 stream_usage: bool = True, temperature: float | None = None, reasoning_tokens: int = 0,
                 reasoning_effort: str = "", **kwargs: Any) -> None:
        # Read before super().__init__, which builds the client (create_client).
        self._http_client = http_client  # shared across the worker's sessions; else one of our own
        self._timeouts = (timeout, connect_timeout, max_retries)
        self._context_at = self._asked_at = time.monotonic()  # the latest turn's context, and its request
        local = notes_router if local is None else local
        # No tools reaching the model (the router): the cap is the spoken answer's. llama.cpp's
        # server knows max_tokens; OpenAI's reasoning models refuse it for max_completion_tokens.
        cap = reply_tokens if notes_router else max(tool_tokens, reply_tokens)
        # A hosted model that reasons (`reasoning_tokens`, see REASONING_MODEL) gets that much more room
        # for its reasoning; the spoken answer is still held to `reply_tokens` by the sentence gate.
        reasoning = {"reasoning_effort": reasoning_effort} if reasoning_effort else {}
        self.reasoning_tokens = 0 if local else reasoning_tokens
        limits: dict[str, Any] = ({"max_tokens": cap} if local
                                  else {"max_completion_tokens": cap + self.reasoning_tokens})
        if temperature is not None:
            limits["temperature"] = temperature
        super().__init__(api_key=api_key or "none", base_url=base_url,
                         settings=OpenAILLMService.Settings(model=model, system_instruction=system_prompt,
                                                            extra={} if local else dict(reasoning), **limits),
                         **kwargs)
        self.notes_router = notes_router
        self.local = local
        self.slot: int | None = None  # the session's llama.cpp slot (SlotPool), for its answers and reads
        self.reply_tokens = reply_tokens
        self.stream_usage = stream_usage  # send stream_options (token usage); some servers refuse it
        self._tool_stream: dict[str, Any] = {}  # what the latest stream said of tool calls (see _watch)
        self.history_tokens = history_tokens
        self._window_start = 0  # where the history window begins (it only moves forward)
        self._gate: SentenceGate | None = None
        self._retrying = False
        self._reading_ahead: asyncio.Task[None] | None = None  # the latest read ahead asked for (_read_ahead)
        self._read_running: asyncio.Task[None] | None = None  # the one llama.cpp is reading now
        self.custom_tools: list[Any] = []  # the assistant's custom tools' schemas (set by the pipeline)
        self._tool_router: CustomToolRouter | None = None  # routes them when the model gets no tools (_route_custom)
        self._offered: Intent | None = None  # the note offered instead of a false claim; a "yes" saves it
        self._asked_search = False  # the user asked to search their notes for nothing said; the next turn says what
        self._last_call: tuple[tuple[str, str], float] | None = None  # the latest routed call, and when
        # What this session's hosted server has not refused of a check's options (a reasoning model
        # refuses temperature and logprobs; its effort goes with them).
        self._check_options = {**HOSTED_CHECK_OPTIONS, **(reasoning if not local else {})}
        self._checks: dict[str, asyncio.Task[Any]] = {}  # a tool's check request still with llama.cpp (_checked)

    def _has_async_tools(self) -> bool:
        """Pipecat's test for appending its async-tool guidance to the system prompt; never with the router.

        The notes tools are registered with cancel_on_interruption=False (a note asked for is
        a note kept), which Pipecat 1.14 takes for "asynchronous" and answers by appending
        ~150 tokens of guidance on results that arrive later. With the router the model
        never calls a tool or reads a result (the router speaks it), so those tokens only
        cost time: on every request, and on the first turn of every session, since the
        prompt the worker read into llama.cpp's cache (`ModelBundle.prime_llm`) no longer
        matched the session's (202 prompt tokens, 36 of them cached: 3.3 s to the first
        token instead of 0.4 s on the 2-core machine).
        """
        return not getattr(self, "notes_router", False) and super()._has_async_tools()

    def create_client(self, api_key: Any = None, base_url: Any = None, organization: Any = None,
                      project: Any = None, default_headers: Any = None, **kwargs: Any) -> Any:
        """Pipecat's client, with timeouts and retries fit for a live call.

        The SDK's defaults (a 600 s read timeout, 2 retries, waits of up to 60 s on a
        429's Retry-After) leave a user talking to a silent bot for minutes. Here a
        request that gets no answer for the timeout fails, and a 429 fails at once:
        the user is told (voice.error) and the next turn tries again. The client's own
        timeout is the HTTP client's (the SDK takes it from there).
        """
        from openai import AsyncAzureOpenAI, AsyncOpenAI

        from .hosted import http_client

        timeout, connect, retries = self._timeouts
        client = self._http_client or http_client(timeout, connect)
        endpoint = getattr(self, "_endpoint", None)  # set by AzureLLMService (the azure flavour)
        if endpoint is not None and not getattr(self, "_use_v1_api", True):
            # Azure's dated surface: /openai/deployments/<model>/...?api-version=..., key in `api-key`.
            return AsyncAzureOpenAI(api_key=api_key, azure_endpoint=endpoint, api_version=self._api_version,
                                    default_headers=default_headers, max_retries=retries, http_client=client)
        if endpoint is not None:
            base_url = endpoint.rstrip("/") + "/"  # Azure's v1 surface takes the plain client, as Pipecat's does
        return AsyncOpenAI(api_key=api_key, base_url=base_url, organization=organization, project=project,
                           default_headers=default_headers, max_retries=retries, http_client=client)

    def _classify_error(self, exception: Exception) -> Any:
        """A refusal of this one turn's content is no reason to stop using the model.

        Pipecat takes every 400 for a malformed request, which is permanent, so the
        session ended. But Azure's content filter refuses one message (code
        `content_filter`) and Groq answers a tool call its model botched with
        `tool_use_failed`: the next turn may well be served.
        """
        from pipecat.utils.errors import ErrorCategory

        from ..provider_errors import turn_refusal

        return ErrorCategory.APPLICATION if turn_refusal(exception) else None

    def build_chat_completion_params(self, params_from_context: Any) -> dict:
        params = super().build_chat_completion_params(params_from_context)
        if not self.stream_usage:
            params.pop("stream_options", None)
        if self.notes_router:  # the local model's tool calls are unreliable (docs/llm-models.md): the router decides
            params.pop("tools", None)
            params.pop("tool_choice", None)
        messages = list(params.get("messages") or [])
        answering_tool = bool(messages) and messages[-1].get("role") == "tool"
        if self.local or self.notes_router:
            # A model that gets no tools reads their results as facts, not as tool messages:
            # the local one would copy their phrasing, and a server's model without tool
            # support may not show them to the model at all (an Ollama template without tools).
            messages = tool_facts(messages)
        messages, self._window_start = window(messages, self.history_tokens, self._window_start)
        messages = alternate(tidy_spaces(messages))
        if self._retrying and messages:
            # After the user's last words, not in the system prompt: llama.cpp's prompt cache holds the
            # conversation up to its first changed token, and a changed system prompt made the retry
            # re-read the whole history (14 s on the bench's 18th turn, 2 cores).
            messages.append({"role": "system", "content": RETRY_HINT})
        params["messages"] = messages
        if self._retrying:
            params["temperature"] = 0.7
        if self.local:
            self._merge_extra_body(params, {**LOCAL_SAMPLING, **(RETRY_SAMPLING if self._retrying else {}),
                                            **(FACTS_SAMPLING if answering_tool else {}),
                                            **pinned(self.slot)})
        return params

    async def start_llm_usage_metrics(self, tokens: Any) -> None:
        # What each answer cost, and how much of its prompt came from llama.cpp's cache:
        # the first thing to look at when answers get slow over a call.
        logger.debug("[VoiceSession] llm tokens: prompt=%s cached=%s completion=%s", tokens.prompt_tokens,
                     tokens.cache_read_input_tokens, tokens.completion_tokens)
        await super().start_llm_usage_metrics(tokens)

    async def _process_context(self, context: LLMContext) -> None:
        self._context_at = time.monotonic()
        if self.notes_router and await self._route_tools(context):
            return  # a routed request or a notes result never asks the model: no read to wait for
        reading, self._reading_ahead = self._reading_ahead, None
        if reading is not None and reading is not self._read_running:
            reading.cancel()  # not begun (behind a Whisper decode, or another read): this request reads it all
        if self._read_running is not None:
            # The read-ahead and this turn would otherwise run in two llama.cpp slots, and this one
            # could land on a slot without the conversation in its cache.
            await asyncio.wait({self._read_running}, timeout=READ_AHEAD_WAIT)
        messages = context.get_messages()
        said, heard = earlier_answers(messages), earlier_words(messages)
        result = self._custom_result(messages)  # this turn answers a custom tool's result
        # With the router no tool runs once the model is asked, so an answer to the user that
        # claims an action is false (claims.py); answering a custom tool's result, it is not.
        watch_claims = self.notes_router and bool(messages) and messages[-1].get("role") == "user"
        try:
            for attempt in range(2):
                gate = self._gate = SentenceGate(said, strict=attempt == 0, budget_tokens=self.reply_tokens,
                                                 claims=watch_claims, heard_before=heard,
                                                 heard_alike=result is not None)
                self._retrying = attempt > 0
                try:
                    try:
                        await super()._process_context(context)
                    except BadRequestError as refused:
                        if self.notes_router or not refuses_tools(refused):
                            raise
                        await self._without_tools(context)
                        return
                    tail = gate.finish()
                    await self._report_cut_tool_call()
                except AnswerComplete:
                    tail = ""  # the stream was closed on the answer's last whole sentence
                except RepeatedAnswer as repeated:
                    # The model's words stay out of INFO+ logs (like Pipecat's prompts): DEBUG only.
                    logger.warning("[VoiceSession] the model began with an earlier answer or the user's earlier "
                                   "words; %s",
                                   "asking again" if result is None else "the tool's answer is said as it came")
                    logger.debug("[VoiceSession] repeated: %r", str(repeated)[:80])
                    if result is not None:
                        # Asked again, hotter and with the hint, the small model made up a tool's answer
                        # ("arriving Thursday or Wednesday" from "arriving Friday"): the answer is said plainly.
                        await super()._push_llm_text(facts_spoken(result))
                        self._read_after_answer(messages)
                        return
                    continue
                await self._spoken(gate, tail, messages)
                if result is not None:
                    self._read_after_answer(messages)
                return
        finally:
            self._gate, self._retrying = None, False

    def _read_after_answer(self, messages: list[dict[str, Any]]) -> None:
        """Once a custom tool's result is answered, read the conversation as the next turn sends it.

        The next turn's prompt keeps only the exchange's facts (`guards.tool_facts`: no request, no
        answer), so it differs from the answer's from the request on: 40-55 tokens to read again,
        which a short next utterance with no words read ahead paid in its turn (conversation 4,
        2026-12-07: "Uro-tromo, and Juliet." read 55 new tokens, 7.7 s to its answer's end). Read
        while the answer is spoken, as a notes exchange is (`_route_tools`).
        """
        if self.local:
            self._read_ahead([*messages, {"role": "assistant", "content": ""}])

    def _is_custom(self, tool: str | None) -> bool:
        """Whether `tool` is one of the assistant's custom tools (not a notes tool)."""
        return any(schema.name == tool for schema in self.custom_tools)

    def _custom_result(self, messages: list[dict[str, Any]]) -> Any:
        """The custom tool's result this turn answers (parsed), or None for any other turn."""
        last = messages[-1] if messages else {}
        if last.get("role") != "tool" or not self._is_custom(_tool_name(messages, last.get("tool_call_id"))):
            return None
        try:
            return json.loads(last.get("content") or "{}")
        except (TypeError, ValueError):
            return {"result": last.get("content")}

    async def _without_tools(self, context: LLMContext) -> None:
        """The server refused the tools (Ollama does, for a model without tool support): from now on
        this session's notes requests go through the router, and this turn is answered again."""
        logger.warning("[VoiceSession] the LLM server does not take tools for this model: notes requests "
                       "go through the notes router from now on (set VOICE_LLM_TOOLS=router to skip this)")
        self.notes_router = True
        self._compose_system_instruction()  # the router runs the tools now: no async-tool guidance
        self._gate = None
        await self._process_context(context)

    async def _spoken(self, gate: SentenceGate, tail: str, messages: list[dict[str, Any]]) -> None:
        """Speak what the gate kept of the model's answer, and log what it held back."""
        if tail:
            await super()._push_llm_text(tail)
        if gate.claimed:
            request = str(messages[-1].get("content") or "")
            said = offer(gate.claimed, request, can_save=self.has_function("create_note"),
                         custom_tools=bool(self.custom_tools), after_words=bool(gate.released))
            self._offered = said.call
            logger.info("[VoiceSession] the answer claimed an action no tool took (%s): %s", gate.claimed,
                        "offered to save a note" if said.call else "said it was not done")
            await super()._push_llm_text(said.spoken)
            return
        if gate.looping:
            logger.warning("[VoiceSession] the model looped inside an answer; stopped after %d sentence(s)",
                           len(gate.released))
        if gate.dropped:
            logger.info("[VoiceSession] %d piece(s) of the answer not spoken (repeated or cut mid-sentence)",
                        len(gate.dropped))
            logger.debug("[VoiceSession] not spoken: %r", [d[:60] for d in gate.dropped])
            if not gate.released:
                await super()._push_llm_text(LOOPING)

    async def _push_llm_text(self, text: str) -> None:
        if self._gate is None:  # a template's words (the notes router), not the model's
            await super()._push_llm_text(text)
            return
        for sentence in self._gate.feed(text):
            await super()._push_llm_text(sentence)
        if self._gate.full or self._gate.claimed:
            raise AnswerComplete  # closes the stream: no paying for words that will not be spoken

    async def get_chat_completions(self, context: LLMContext) -> Any:
        self._asked_at = time.monotonic()
        return self._watch(await super().get_chat_completions(context))

    async def _watch(self, stream: Any) -> Any:
        """`stream`'s chunks, noting the tool calls begun in it and why it finished.

        Pipecat drops a tool call whose JSON arguments do not parse with only a log line;
        a provider cuts them so when the token limit is reached (finish_reason "length").
        A delta with several tool calls becomes one chunk per call.
        """
        state = self._tool_stream = {"names": [], "finish": None}
        first = True
        try:
            async for chunk in stream:
                calls: list[Any] = []
                for choice in chunk.choices or []:
                    if first and choice.delta and (choice.delta.content or choice.delta.tool_calls):
                        first = False
                        # Where a turn's wait goes: before the request (routing, a read ahead
                        # finishing), or in the model (reading the prompt's new tokens).
                        now = time.monotonic()
                        logger.debug("[VoiceSession] llm first token %.0f ms after the context, %.0f ms after the "
                                     "request", (now - self._context_at) * 1000, (now - self._asked_at) * 1000)
                    calls = list((choice.delta.tool_calls or []) if choice.delta else [])
                    for call in calls:
                        if call.function and call.function.name:
                            state["names"].append(call.function.name)
                    if choice.finish_reason:
                        state["finish"] = choice.finish_reason
                if len(calls) > 1:
                    # Pipecat reads only a delta's first tool call; some OpenAI-compatible
                    # servers send several whole calls in one delta. One chunk per call.
                    for call in calls:
                        single = chunk.model_copy(deep=True)
                        single.choices[0].delta.tool_calls = [call]
                        yield single
                    continue
                yield chunk
        finally:
            if hasattr(stream, "close"):
                await stream.close()

    async def _report_cut_tool_call(self) -> None:
        """Tell the user (voice.error) when the token limit cut a tool call: nothing was done."""
        state, self._tool_stream = self._tool_stream, {}
        if state.get("names") and state.get("finish") == "length":
            logger.warning("[VoiceSession] the token limit cut a call of %s: not run", ", ".join(state["names"]))
            await self.push_error("a tool call was cut by the token limit",
                                  exception=ToolCallCut(state["names"][-1]))

    async def _route_tools(self, context: LLMContext) -> bool:
        """For a model whose tool calls are not used: turn the user's request into a tool call, and
        speak a notes tool's result from a template. True when this turn is handled so; a custom
        tool's result is the model's to put in words (it sees it as a fact, guards.tool_facts)."""
        messages = context.get_messages()
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            tool = _tool_name(messages, last.get("tool_call_id"))
            if self._is_custom(tool):
                return False
            try:
                result = json.loads(last.get("content") or "{}")
            except (TypeError, ValueError):
                result = {"ok": False}
            if isinstance(result, dict) and tool:
                await self._say(messages, speak_result(tool, result))
                return True
            return False
        if last.get("role") != "user" or not isinstance(last.get("content"), str):
            return False
        offered, self._offered = self._offered, None  # an offer is for the next turn only
        if offered is not None and agrees(last["content"]):
            await self._call(context, offered.tool, offered.arguments)
            return True
        asked, self._asked_search = self._asked_search, False  # so is the question of what to search for
        # In a thread: the classifier's few milliseconds of numpy would hold up every other
        # session's audio on this worker's event loop.
        intent = await asyncio.to_thread(parse_intent, last["content"])
        if intent is None and asked and (query := search_query(last["content"])):
            intent = Intent("search_notes", {"query": query})  # the answer to SEARCH_QUESTION
        if intent is None or not self.has_function(intent.tool):  # the assistant's notes tools may be off
            return await self._route_custom(context, last["content"])
        if intent.tool == "search_notes" and not intent.arguments.get("query"):
            # "Search my notes." names nothing to search for; searching for the request's own words
            # found nothing ("None of your notes mention Search my notes."): ask instead.
            self._asked_search = True
            await self._say(messages, SEARCH_QUESTION)
            return True
        await self._call(context, intent.tool, intent.arguments)
        return True

    async def _say(self, messages: list[dict[str, Any]], spoken: str) -> None:
        """Speak the router's own words (a notes result, a question); on the local model the exchange
        is read into llama.cpp's cache while they are spoken, so the next turn reads only its words."""
        await self._push_llm_text(spoken)
        if self.local:
            self._read_ahead([*messages, {"role": "assistant", "content": spoken}])

    async def _call(self, context: LLMContext, tool: str, arguments: dict[str, Any]) -> None:
        """Run `tool` as if the model had called it: the same frames, events and context entries.
        Not the same call twice within DUPLICATE_CALL_SECONDS: a booking or a transfer made twice."""
        key, now = (tool, json.dumps(arguments, sort_keys=True, default=str)), time.monotonic()
        last = self._last_call
        if last is not None and last[0] == key and now - last[1] < DUPLICATE_CALL_SECONDS:
            logger.warning("[VoiceSession] %s asked for again with the same arguments within %.0fs: not run twice",
                           tool, DUPLICATE_CALL_SECONDS)
            return
        # A speculative run (the turn not yet over) has its calls withdrawn, not made (Pipecat's
        # run_function_calls): only a call made counts as the one before.
        speculative = bool(getattr(getattr(self, "_speculation_gate", None), "is_speculating", False))
        if self.local and not speculative and self._is_custom(tool):
            # The answer's prompt up to the tool's words, read while the tool runs and its start message
            # is said: the answer then reads only those words (~15 of ~50 new tokens).
            self._read_ahead(facts_ahead(context.get_messages(), tool, arguments))
        await self.run_function_calls([FunctionCallFromLLM(
            function_name=tool, tool_call_id=f"call_{uuid.uuid4().hex[:12]}", arguments=arguments, context=context)])
        if not speculative:
            self._last_call = (key, now)

    async def _route_custom(self, context: LLMContext, text: str) -> bool:
        """Call the custom tool the user asks for (tool_router.py), or ask for an argument they left out:
        for the local model, and a hosted one in router mode (neither is given the tools)."""
        if not self.custom_tools:
            return False
        if self._tool_router is None:
            self._tool_router = await asyncio.to_thread(CustomToolRouter, self.custom_tools)
        router = self._tool_router
        candidates = await asyncio.to_thread(router.candidates, text)
        if not candidates and router.pending is None:
            return False
        call = await router.decide(text, self._check_tool, candidates=candidates)
        if call is None or not self.has_function(call.tool):
            return False
        if call.missing:
            logger.info("[VoiceSession] custom tool %s asked for: its %s is missing", call.tool, call.missing[0])
            await self._push_llm_text(call.question())
            return True
        logger.info("[VoiceSession] custom tool %s called by the router (P=%s)", call.tool,
                    "?" if call.confidence is None else f"{call.confidence:.2f}")
        await self._call(context, call.tool, call.arguments)
        return True

    async def _check_tool(self, messages: list[dict[str, Any]], card: Card, *,
                          arguments_from: float | None = None) -> tuple[str, list[tuple[str, float]]]:
        """One constrained answer from the model on whether `messages` ask for `card`'s tool, and the
        top log-probabilities at its "true" or "false" (tool_router.CustomToolRouter.check).

        The local model's answer is started for it and held to llama.cpp grammars (`_check_locally`);
        a hosted model's is held to a strict JSON schema (structured outputs). An option the hosted
        server refuses (400 naming it) is dropped for the session and the check asked again.
        """
        if self.local:
            return await self._check_locally(messages, card, arguments_from)
        while True:
            request = dict(messages=messages, max_completion_tokens=CHECK_TOKENS + self.reasoning_tokens,
                           response_format=card.response_format(), **self._check_options)
            try:
                response = await self._checked(card, request)
            except BadRequestError as refused:
                option = getattr(refused, "param", None)
                if option not in self._check_options:
                    raise
                logger.info("[VoiceSession] the LLM server refused %s in a custom tool check; asking without it",
                            option)
                self._check_options.pop(option)
                if option == "logprobs":
                    self._check_options.pop("top_logprobs", None)  # meaningless without it
                continue
            choice = response.choices[0]
            return choice.message.content or "", request_top(_top_logprobs(choice))

    async def _check_locally(self, messages: list[dict[str, Any]], card: Card,
                             arguments_from: float | None = None) -> tuple[str, list[tuple[str, float]]]:
        """The local model's check in two steps: its verdict alone (one token, and its probability),
        then, for a request, the arguments after an opening written into the request
        (`Card.arguments_opening`). In one answer the grammar forced ~10 tokens between the verdict and
        the first value, each a decoding step of its own: a request's check took 1.3-1.7 s on 2 cores."""
        started = [*messages, {"role": "assistant", "content": ANSWER_START}]
        response = await self._checked(card, dict(messages=started, max_tokens=2, temperature=0, logprobs=True,
                                                  top_logprobs=5,
                                                  extra_body={"grammar": VERDICT_GRAMMAR, "cache_prompt": True}))
        choice = response.choices[0]
        verdict, top = _continued(choice.message.content, ANSWER_START), request_top(_top_logprobs(choice))
        if verdict.strip() != "true":
            return verdict + "}", top
        sure = confidence(top)
        if arguments_from is not None and sure is not None and sure < arguments_from:
            logger.debug("[VoiceSession] tool check %s: a request at P=%.2f, its arguments not asked", card.name, sure)
            return verdict + "}", top  # the router decides without them (CustomToolRouter.check)
        opening = card.arguments_opening()
        if not card.properties:
            return opening, top
        response = await self._checked(card, dict(
            messages=[*messages, {"role": "assistant", "content": ANSWER_START + opening}], max_tokens=CHECK_TOKENS,
            temperature=0, extra_body={"grammar": card.arguments_grammar(), "cache_prompt": True}))
        return opening + _continued(response.choices[0].message.content, ANSWER_START + opening), top

    async def _checked(self, card: Card, request: dict[str, Any]) -> Any:
        """One request of a custom tool check, bounded well below the client's 120 s: the user is waiting,
        and a check that does not come back leaves the turn to chat (CustomToolRouter.check logs it).

        On the local model a tool's checks go to llama.cpp one at a time, and one whose turn was withdrawn
        (the user went on speaking: turnend.py) is left to finish rather than cancelled. llama.cpp moves
        the tool's prompt out of its cache into the slot that reads the check, and goes on with it for a
        while after the client has gone; the next turn's check of the same tool, sent at once, found that
        slot busy and read the whole prompt again in another (3.5 s against 0.2 s on 2 cores,
        docs/benchmarks.md). Waiting for the withdrawn one costs at most what is left of it.
        """
        if not self.local:
            return await self._ask_check(card, request)
        while (ahead := self._checks.get(card.name)) is not None and not ahead.done():
            await asyncio.wait({ahead})
        self._checks[card.name] = task = asyncio.get_running_loop().create_task(
            self._ask_check(card, request), name=f"check-{card.name}")
        task.add_done_callback(_retrieved)  # a withdrawn turn's check fails or ends unread
        return await asyncio.shield(task)

    async def _ask_check(self, card: Card, request: dict[str, Any]) -> Any:
        started = time.monotonic()
        response = await asyncio.wait_for(self._client.chat.completions.create(
            model=self._settings.model, stream=False, **request), CHECK_TIMEOUT)
        # What a check cost: it stands between the user and the answer, so its prompt should come
        # from llama.cpp's cache (all but the user's words).
        prompt, cached, completion = _usage(response)
        logger.debug("[VoiceSession] tool check %s: %.0f ms, prompt=%s cached=%s completion=%s", card.name,
                     (time.monotonic() - started) * 1000, prompt, cached, completion)
        return response

    def prefill(self, messages: list[dict[str, Any]]) -> bool:
        """Have llama.cpp read `messages` (the conversation and the user's words so far) while
        the user still speaks; False when a read is already running (the caller tries later).

        A turn's prompt is the conversation, which the cache holds, plus the user's new words
        and the chat template around them: ~19 tokens that took 0.7 s to the first token on
        2 idle cores, most of a turn's LLM wait. With all but the last words of an interim
        transcript read ahead, the turn reads ~8 (0.36 s). Only for the local model: a hosted
        API would bill every read.
        """
        if not self.local or (self._reading_ahead is not None and not self._reading_ahead.done()):
            return False
        self._read_ahead(messages, open_end=True)
        return True

    def _read_ahead(self, messages: list[dict[str, Any]], *, open_end: bool = False) -> None:
        # After any read still running (the user's words): one slot of llama.cpp's, in order.
        self._reading_ahead = self.create_task(self._read(messages, after=self._reading_ahead, open_end=open_end),
                                               name="read-ahead")

    async def _read(self, messages: list[dict[str, Any]], after: asyncio.Task[None] | None = None, *,
                    open_end: bool = False) -> None:
        """Send `messages` to llama.cpp asking for one token, so its prompt cache holds them.

        The model wrote every earlier answer itself, so its cache holds them, and a turn
        reads only what is new. Read ahead: a notes exchange (the request, the tool's facts
        and the spoken result, 30-40 tokens it never saw, read while the result is spoken),
        the user's words while they speak (`prefill`), and a custom tool's facts up to its
        answer while it runs (`guards.facts_ahead`). `cache_prompt` keeps them; a read waits
        for the one before it (`after`) and the next turn for a read still running
        (`_process_context`), so all use one slot.

        `open_end`: the last message is the user's words so far, read without the chat
        template's end of the message (`_read_open`).
        """
        if after is not None and not after.done():
            await asyncio.wait({after})
        async with gate().read():  # never beside a Whisper decode (computegate.py)
            self._read_running = asyncio.current_task()
            try:
                await self._read_now(messages, open_end=open_end)
            finally:
                self._read_running = None

    async def _read_now(self, messages: list[dict[str, Any]], *, open_end: bool = False) -> None:
        try:
            upcoming = LLMContext(messages=messages)
            params_from_context = await self.get_llm_adapter().get_llm_invocation_params(
                upcoming, system_instruction=assert_given(self._settings.system_instruction),
                convert_developer_to_user=not self.supports_developer_role)
            start = self._window_start
            try:
                params = self.build_chat_completion_params(params_from_context)
            finally:
                self._window_start = start  # the real request moves the window, not this one
            params.pop("stream_options", None)
            params.update(stream=False, max_tokens=1)
            started = time.monotonic()
            if open_end and await self._read_open(params):
                return
            response = await self._client.chat.completions.create(**params)
            prompt, cached, _ = _usage(response)
            # A turn may wait for this read (_process_context): what it cost, as for a tool check.
            logger.debug("[VoiceSession] read ahead: %.0f ms, prompt=%s cached=%s", (time.monotonic() - started) * 1000,
                         prompt, cached)
        except Exception as exc:  # noqa: BLE001 - only a speed-up: the next turn reads it all then
            logger.debug("[VoiceSession] reading ahead failed: %s", exc)

    async def _read_open(self, params: dict[str, Any]) -> bool:
        """Read the request in `params` up to the end of the user's words, without the chat
        template's end of their message; False when the words are not found in the template.

        Read as a chat request, the user's words so far came with the template's end of the
        message and the assistant's turn (~5 tokens with Qwen's), which the next read and
        the turn's request, their words going on, had to read again: a read of one new word
        cost 6 tokens (~240 ms on 2 cores), read open-ended 1-2 (~90 ms). llama.cpp renders
        its own template (`/apply-template`, no inference), and `/completion` reads the
        prompt cut after the words into the same prompt cache.
        """
        words = str(params["messages"][-1].get("content") or "")
        root = str(self._client.base_url).rstrip("/").removesuffix("/v1")
        body = {"messages": params["messages"], **({"tools": params["tools"]} if params.get("tools") else {})}
        rendered = (await self._client.post(f"{root}/apply-template", body=body, cast_to=object))["prompt"]
        cut = rendered.rfind(words) if words else -1
        if cut < 0:
            return False
        started = time.monotonic()
        read = await self._client.post(f"{root}/completion", cast_to=object, body={
            "prompt": rendered[:cut + len(words)], "n_predict": 0, "cache_prompt": True, **pinned(self.slot)})
        logger.debug("[VoiceSession] read ahead: %.0f ms, prompt=%s new=%s (open-ended)",
                     (time.monotonic() - started) * 1000, read.get("tokens_evaluated"),
                     (read.get("timings") or {}).get("prompt_n"))
        return True


def _usage(response: Any) -> tuple[int | None, int | None, int | None]:
    """A non-streamed answer's prompt tokens, those of them from llama.cpp's cache, and its completion tokens."""
    usage = response.usage
    return (getattr(usage, "prompt_tokens", None),
            getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None),
            getattr(usage, "completion_tokens", None))


def _retrieved(task: "asyncio.Task[Any]") -> None:
    """Mark a background check's failure as seen: its turn, if still waiting, gets it from the shield."""
    if not task.cancelled():
        task.exception()


def _tool_name(messages: list[dict[str, Any]], tool_call_id: str | None) -> str | None:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call.get("id") == tool_call_id:
                return call.get("function", {}).get("name")
    return None


def _top_logprobs(choice: Any) -> list[tuple[str, list[tuple[str, float]]]]:
    """Each answer token of `choice` with its top alternatives' log-probabilities, as the server gave them."""
    content = choice.logprobs.content or [] if choice.logprobs else []
    return [(t.token, [(a.token, a.logprob) for a in t.top_logprobs or []]) for t in content]


def _continued(content: str | None, started: str) -> str:
    """What the model added to an answer begun for it: llama.cpp's server gives the answer back whole,
    with the words it was begun with."""
    text = content or ""
    return text[len(started):] if text.startswith(started) else text
