"""A worker runs each local model once at start, so the first turn is not the slow one."""
from __future__ import annotations

import logging

import httpx
import pytest

from assistants.models import AssistantRecord
from voicebot.services import load_bundle
from voicebot.services.llm import compose_prompt
from voicebot.session import assistant_prompts

PROMPT = ("You are Marlow, the front desk of a small hotel by the sea. Answer guests in one or two short "
          "sentences, and offer to book a table at the restaurant when they mention dinner.")


def test_the_worker_warms_every_local_model_and_reads_the_assistants_prompts(settings, caplog):
    settings.VOICE_WARM_MODELS = True
    prompt = compose_prompt(PROMPT, "Marlow")
    with caplog.at_level(logging.INFO, logger="voicebot.services"):
        bundle = load_bundle([prompt])
    try:
        warmed = [r.getMessage() for r in caplog.records if "models warmed" in r.getMessage()]
        assert len(warmed) == 1
        assert all(f"{stage} " in warmed[0] for stage in ("stt", "llm", "tts")), warmed
        # A guest's first question finds the assistant's prompt already in llama.cpp's cache.
        answer = httpx.post(f"{bundle.llm_base_url}/chat/completions", timeout=120, json={
            "model": bundle.llm_model, "max_tokens": 2, "cache_prompt": True,
            "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "Hi, any rooms?"}]})
        timings = answer.raise_for_status().json()["timings"]
        assert timings["cache_n"] >= 40 and timings["prompt_n"] <= 15, timings
    finally:
        del bundle.llm_server


@pytest.mark.django_db
def test_the_prompts_to_warm_are_the_voice_assistants_as_a_join_names_them():
    AssistantRecord.objects.create(name="Marlow", slug="marlow", persona="Marlow", system_prompt=PROMPT)
    AssistantRecord.objects.create(name="Off", slug="off", persona="Off", system_prompt="Never used.",
                                   voice_enabled=False)
    AssistantRecord.objects.create(name="Plain", slug="plain")
    prompts = assistant_prompts(4)
    assert compose_prompt(PROMPT, "Marlow") in prompts
    assert compose_prompt("", "") in prompts  # an assistant with no prompt of its own gets the default
    assert not any("Never used" in p for p in prompts)
