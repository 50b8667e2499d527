"""The end-of-call report's summary, written by the session's assistant's own LLM."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from webhooks.report import SUMMARY_PROMPT

from .services.assistant_models import for_models

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
        limit = {"max_tokens": SUMMARY_TOKENS} if llm.local_llm else {"max_completion_tokens": SUMMARY_TOKENS}
        response = await client.chat.completions.create(
            model=llm.llm_model, temperature=0.2, **limit,
            messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}])
        return response.choices[0].message.content or ""

    return summarise
