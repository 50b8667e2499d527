"""Each session's services from its assistant's model choices (the job's `models`).

A worker loads its default models once (load_bundle); an assistant may name other
endpoints per stage (assistants.ModelEndpoint). `for_models` gives the session a copy
of the worker's bundle with those stages pointed elsewhere: the loaded local models,
the shared HTTP clients and the TTS lock stay shared, so an assistant on a hosted LLM
costs its sessions nothing more than one on the default.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from assistants.providers import PROVIDERS, STAGE_NAMES, STAGES

if TYPE_CHECKING:
    from . import ModelBundle

logger = logging.getLogger("voicebot.services")


class UnsupportedModels(Exception):
    """This worker cannot run a stage the assistant asks for; the message is for the user."""

    code = "provider_unavailable"

    def __init__(self, stage: str, endpoint: str, why: str) -> None:
        self.stage, self.endpoint = stage, endpoint
        super().__init__(f"The assistant's {STAGE_NAMES[stage]} ({endpoint}) is not available: {why}.")


def offers(bundle: "ModelBundle | None") -> dict[str, list[str]]:
    """The providers a worker with `bundle` runs, per stage (BotWorker.offers): every hosted one,
    and "local" where it loaded the local model. A spawning worker loads nothing: {} (unknown)."""
    if bundle is None:
        return {}
    loaded = {"stt": bundle.stt_model is not None, "llm": bundle.llm_server is not None,
              "tts": bundle.tts_engine is not None}
    return {stage: [p for p in PROVIDERS[stage] if p != "local" or loaded[stage]] for stage in STAGES}


def for_models(bundle: "ModelBundle", models: dict[str, Any]) -> "ModelBundle":
    """`bundle` with the stages `models` names pointed at their endpoints (blocking: a stored
    key is read from the database, never from the job). Raises UnsupportedModels."""
    if not any(models.get(stage) for stage in STAGES):
        return bundle
    derived = dataclasses.replace(bundle)  # shallow: models, HTTP clients and the TTS lock stay shared
    offered = offers(bundle)
    for stage in STAGES:
        choice: dict[str, Any] = models.get(stage) or {}
        provider = choice.get("provider")
        if provider is None:
            continue
        name = choice.get("endpoint", provider)
        if provider not in offered[stage]:
            raise UnsupportedModels(stage, name, f"this worker does not run {provider} {STAGE_NAMES[stage]}s")
        if provider == "local":
            continue  # a worker runs its local model only as its default: nothing to change
        _point(derived, stage, provider, _api(stage, name, choice), choice)
        logger.info("[BotJoin] %s from endpoint %s (%s, model %s)", stage, name, provider, choice.get("model"))
    llm = models.get("llm") or {}
    if llm.get("temperature") is not None:
        derived.llm_temperature = float(llm["temperature"])
    if llm.get("maxTokens"):
        derived.llm_reply_tokens = int(llm["maxTokens"])
    derived.stt_keywords = tuple(str(word) for word in (models.get("stt") or {}).get("keywords") or ())
    return derived


def _api(stage: str, name: str, choice: dict[str, Any]) -> Any:
    from .hosted import NO_KEY, HostedAPI

    key = ""
    if choice.get("keyEnv"):
        key = os.environ.get(choice["keyEnv"], "")
        if not key:
            raise UnsupportedModels(stage, name, f"${choice['keyEnv']} is not set on this worker")
    elif choice.get("hasKey"):
        key = _stored_key(name)
        if not key:
            raise UnsupportedModels(stage, name, "its stored key is gone")
    return HostedAPI(base_url=choice["baseUrl"], api_key=key or NO_KEY, model=choice.get("model", ""))


def _stored_key(name: str) -> str:
    from assistants.models import ModelEndpoint

    return ModelEndpoint.objects.filter(name=name, enabled=True).values_list("api_key", flat=True).first() or ""


def _point(bundle: "ModelBundle", stage: str, provider: str, api: Any, choice: dict[str, Any]) -> None:
    from .hosted import OPENAI_TTS_SAMPLE_RATE

    if stage == "stt":
        bundle.stt_provider, bundle.stt_api = provider, api
    elif stage == "llm":
        bundle.llm_base_url, bundle.llm_api_key, bundle.llm_model = api.base_url, api.api_key, api.model
        bundle.llm_api, bundle.local_llm = api, False  # a hosted model gets the tool definitions
        bundle.llm_flavor = choice.get("flavor", "openai")
    else:
        bundle.tts_provider, bundle.tts_api = provider, api
        bundle.tts_voice = choice.get("voice", "")  # the endpoint's default voice (the assistant's comes first)
        bundle.tts_voices = None  # any voice id: the provider refuses one it lacks (a voice.error)
        bundle.tts_sample_rate = OPENAI_TTS_SAMPLE_RATE  # asked of every hosted provider: no resampling
