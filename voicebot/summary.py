"""The end-of-call report's summary, written by the session's assistant's own LLM."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from webhooks.report import SUMMARY_PROMPT

from .services.assistant_models import for_models
from .services.llm import reasoning_options

if TYPE_CHECKING:
    from .services import ModelBundle

SUMMARY_TOKENS = 120


def _assistant_models(assistant_id: Any) -> dict[str, Any]:
    from assistants.models import AssistantRecord

    assistant = AssistantRecord.objects.filter(pk=assistant_id).first() if assistant_id is not None else None
    return assistant.models_spec if assistant is not None else {}


def summariser(bundle: "ModelBundle"):
    """A webhooks.delivery.Summariser on this worker's models: (assistant id, transcript) -> summary."""

    async def summarise(assistant_id: Any, transcript: str) -> str:
        from openai import AsyncOpenAI

        models = await database_sync_to_async(_assistant_models)(assistant_id)
        llm = await database_sync_to_async(for_models)(bundle, models)
        if (llm.llm_flavor or "openai") == "azure":
            raise NotImplementedError("summaries on Azure's dated API are not written yet")
        client = AsyncOpenAI(base_url=llm.llm_base_url, api_key=llm.llm_api_key, max_retries=0,
                             http_client=llm.http("llm"))
        reasoning = {} if llm.local_llm else reasoning_options(llm.llm_model)
        if llm.local_llm:
            options: dict[str, Any] = {"max_tokens": SUMMARY_TOKENS, "temperature": 0.2}
        elif reasoning:  # it refuses any temperature but 1, and reasons inside the cap
            options = {"max_completion_tokens": SUMMARY_TOKENS + reasoning["reasoning_tokens"]}
            if reasoning["reasoning_effort"]:
                options["reasoning_effort"] = reasoning["reasoning_effort"]
        else:
            options = {"max_completion_tokens": SUMMARY_TOKENS, "temperature": 0.2}
        response = await client.chat.completions.create(
            model=llm.llm_model, **options,
            messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}])
        return response.choices[0].message.content or ""

    return summarise
