"""VOICE_LLM_FLAVOR: Pipecat's own class for each OpenAI-compatible server, against fakes of Groq, Azure and Ollama.

Each fake (tests/fakes/llm_servers.py) is the strict fake OpenAI API with the
server's own paths, authentication and refusals. The session's LLM is run in a
real Pipecat pipeline, as in test_guards.py.
"""
from __future__ import annotations

import asyncio

import pytest
from pipecat.frames.frames import ErrorFrame, LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from tests.fakes.llm_servers import FakeAzure, FakeGroq, FakeOllama
from voicebot.provider_errors import describe
from voicebot.services import load_bundle
from voicebot.services.hosted import HostedConfigError
from voicebot.tools import TOOLS


def flavor_settings(settings, flavor: str, url: str, key: str, model: str) -> None:
    settings.VOICE_STT = settings.VOICE_TTS = "openai"
    settings.VOICE_STT_API_KEY = settings.VOICE_TTS_API_KEY = "sk-unused"
    settings.VOICE_STT_BASE_URL = settings.VOICE_TTS_BASE_URL = "https://api.openai.com/v1"
    settings.VOICE_LLM, settings.VOICE_LLM_FLAVOR = "openai", flavor
    settings.VOICE_LLM_BASE_URL, settings.VOICE_LLM_API_KEY, settings.VOICE_LLM_MODEL = url, key, model
    settings.VOICE_WARM_MODELS = False


def ask(llm, text: str, *, tools: bool = True) -> list:
    messages = [{"role": "user", "content": text}]
    context = LLMContext(messages=messages, tools=TOOLS) if tools else LLMContext(messages=messages)
    down, up = asyncio.run(run_test(llm, frames_to_send=[LLMContextFrame(context)], start_timeout=30))
    return [*down, *up]


def said(frames: list) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def errors(frames: list) -> list:
    return [describe(f) for f in frames if isinstance(f, ErrorFrame)]


@pytest.mark.parametrize("flavor, cls", [("ollama", "OLLamaLLMService"), ("groq", "GroqLLMService"),
                                         ("azure", "AzureLLMService")])
def test_each_flavor_is_pipecats_own_class_with_our_guards(settings, flavor, cls):
    from voicebot.services.llm import VoiceLLMService

    flavor_settings(settings, flavor, "https://example.invalid/openai/v1", "key-1234", "m")
    llm = load_bundle().make_llm(system_prompt="Be brief.")
    assert isinstance(llm, VoiceLLMService) and cls in [c.__name__ for c in type(llm).__mro__]


def test_groq_serves_a_turn_and_its_tool_calls(settings):
    with FakeGroq() as groq:
        flavor_settings(settings, "groq", groq.url, groq.api_key, "llama-3.3-70b-versatile")
        llm = load_bundle().make_llm(system_prompt="Be brief.")
        assert "Hello Groq" in said(ask(llm, "Hello Groq", tools=False))
        (chat,) = groq.requests_to("/openai/v1/chat/completions", ok=True)
        assert chat.headers["authorization"] == f"Bearer {groq.api_key}"
        assert "max_completion_tokens" in chat.json and "n" not in chat.json


def test_groqs_gpt_oss_reasons_inside_the_cap_and_still_answers(settings):
    """Groq's gpt-oss reasons before it answers, and the reasoning counts against the cap: the session's
    model is given room for it and a low effort (VOICE_LLM_REASONING_*), through the bundle as a worker builds it."""
    with FakeGroq() as groq:
        flavor_settings(settings, "groq", groq.url, groq.api_key, "openai/gpt-oss-20b")
        settings.VOICE_LLM_TOOLS = "router"  # no tools sent: the cap is the spoken answer's 100 tokens
        llm = load_bundle().make_llm(system_prompt="Be brief.")
        assert "Hello Groq" in said(ask(llm, "Hello Groq", tools=False))
        (chat,) = groq.requests_to("/openai/v1/chat/completions", ok=True)
        assert chat.json["reasoning_effort"] == "low" and chat.json["max_completion_tokens"] == 100 + 1024
        # Without the room and at the model's own effort, the reasoning used the whole cap: nothing was said.
        settings.VOICE_LLM_REASONING_TOKENS, settings.VOICE_LLM_REASONING_EFFORT = 0, ""
        assert said(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello Groq", tools=False)) == ""


def test_a_botched_groq_tool_call_costs_one_turn_not_the_session(settings):
    """Groq answers 400 tool_use_failed when its model's tool call does not parse; Pipecat took
    every 400 for a malformed request and marked the LLM unusable, so the session ended."""
    with FakeGroq() as groq:
        flavor_settings(settings, "groq", groq.url, groq.api_key, "llama-3.3-70b-versatile")
        llm = load_bundle().make_llm(system_prompt="Be brief.")
        groq.tool_use_failed_next()
        (error,) = errors(ask(llm, "What notes do I have?"))
        assert (error.code, error.fatal) == ("llm_tool_call_failed", False)
        assert "failed_generation" not in error.message and llm.is_usable  # Pipecat would give it work again
        again = load_bundle().make_llm(system_prompt="Be brief.")  # a processor runs in one pipeline only
        assert "Hello again" in said(ask(again, "Hello again", tools=False))


def test_groq_refuses_what_groq_does_not_support(settings):
    import httpx

    with FakeGroq() as groq, httpx.Client(base_url=groq.url, timeout=5) as http:
        auth = {"Authorization": f"Bearer {groq.api_key}"}
        chat = {"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "hi"}]}
        assert http.post("/chat/completions", json={**chat, "n": 2}, headers=auth).status_code == 400
        assert http.post("/chat/completions", json={**chat, "logprobs": True}, headers=auth).status_code == 400
        named = {**chat, "messages": [{"role": "user", "content": "hi", "name": "pearl"}]}
        assert http.post("/chat/completions", json=named, headers=auth).status_code == 400
        effort = http.post("/chat/completions", json={**chat, "reasoning_effort": "low"}, headers=auth)
        assert effort.status_code == 400 and "reasoning_effort" in effort.text
        wrong = http.post("/chat/completions", json=chat, headers={"Authorization": "Bearer gsk_wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid API Key"
        assert http.post("/chat/completions", json=chat, headers=auth).status_code == 200


@pytest.mark.parametrize("surface", ["v1", "dated"])
def test_azure_serves_a_turn_on_either_api_surface(settings, surface):
    with FakeAzure() as azure:
        endpoint = f"http://127.0.0.1:{azure.port}" + ("/openai/v1" if surface == "v1" else "")
        flavor_settings(settings, "azure", endpoint, azure.api_key, "voice-gpt")
        llm = load_bundle().make_llm(system_prompt="Be brief.")
        assert "Hello Azure" in said(ask(llm, "Hello Azure", tools=False))
        path = ("/openai/v1/chat/completions" if surface == "v1"
                else "/openai/deployments/voice-gpt/chat/completions")
        (chat,) = azure.requests_to(path, ok=True)
        if surface == "dated":  # the key in api-key, as Azure's dated API takes it
            assert chat.headers["api-key"] == azure.api_key and "authorization" not in chat.headers
        else:
            assert chat.headers["authorization"] == f"Bearer {azure.api_key}"


def test_an_unknown_azure_api_version_or_deployment_is_a_fatal_rejection(settings):
    with FakeAzure() as azure:
        flavor_settings(settings, "azure", f"http://127.0.0.1:{azure.port}", azure.api_key, "voice-gpt")
        settings.VOICE_LLM_API_VERSION = "2023-01-01"
        (error,) = errors(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello", tools=False))
        assert (error.code, error.fatal) == ("llm_rejected", True)
        settings.VOICE_LLM_API_VERSION = "2025-04-01-preview"
        settings.VOICE_LLM_MODEL = "no-such-deployment"
        (error,) = errors(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello", tools=False))
        assert (error.code, error.fatal) == ("llm_rejected", True)


def test_azures_content_filter_refuses_one_turn_not_the_session(settings):
    with FakeAzure() as azure:
        flavor_settings(settings, "azure", f"http://127.0.0.1:{azure.port}/openai/v1", azure.api_key, "voice-gpt")
        llm = load_bundle().make_llm(system_prompt="Be brief.")
        azure.content_filter_next()
        (error,) = errors(ask(llm, "Something the filter dislikes", tools=False))
        assert (error.code, error.fatal) == ("llm_refused", False) and llm.is_usable
        again = load_bundle().make_llm(system_prompt="Be brief.")
        assert "Fine now" in said(ask(again, "Fine now", tools=False))


def test_a_wrong_azure_key_is_a_fatal_auth_error(settings):
    with FakeAzure() as azure:
        flavor_settings(settings, "azure", f"http://127.0.0.1:{azure.port}", "0" * 32, "voice-gpt")
        (error,) = errors(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello", tools=False))
        assert (error.code, error.fatal) == ("llm_auth_failed", True)


def test_ollama_is_keyless_and_a_model_not_pulled_is_a_fatal_rejection(settings):
    with FakeOllama(models=("llama3.2",)) as ollama:
        flavor_settings(settings, "ollama", ollama.url, "", "llama3.2")
        assert "Hello Ollama" in said(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello Ollama",
                                          tools=False))
        (chat,) = ollama.requests_to("/v1/chat/completions", ok=True)
        assert all(m["role"] != "developer" for m in chat.json["messages"])  # Ollama ignores that role
        settings.VOICE_LLM_MODEL = "qwen3"
        (error,) = errors(ask(load_bundle().make_llm(system_prompt="Be brief."), "Hello", tools=False))
        assert (error.code, error.fatal) == ("llm_rejected", True)


@pytest.mark.parametrize("flavor, key, url, message", [
    ("groq", "", "https://api.groq.com/openai/v1", "VOICE_LLM=openai needs VOICE_LLM_API_KEY"),
    ("azure", "k", "", "VOICE_LLM_BASE_URL must be an http(s) or ws(s) URL"),
    ("mistral", "k", "https://api.mistral.ai/v1", "VOICE_LLM_FLAVOR must be one of openai, ollama, groq, azure"),
])
def test_unusable_flavor_settings_fail_at_start(settings, flavor, key, url, message):
    flavor_settings(settings, flavor, url, key, "m")
    with pytest.raises(HostedConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_bundle()
