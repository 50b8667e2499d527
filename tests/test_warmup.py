"""A worker runs each local model once at start, so the first turn is not the slow one."""
from __future__ import annotations

import logging

import httpx
import pytest

from assistants.models import AssistantRecord
from voicebot.services import load_bundle
from voicebot.services.llm import compose_prompt
from voicebot.session import assistant_prompts, tool_check_prompts

PROMPT = ("You are Marlow, the front desk of a small hotel by the sea. Answer guests in one or two short "
          "sentences, and offer to book a table at the restaurant when they mention dinner.")


ROOM_TOOL = {"name": "book_room", "description": "Book a room at the hotel for a guest.",
             "parameters": {"type": "object", "required": ["nights"],
                            "properties": {"nights": {"type": "integer", "description": "How many nights"}}}}


def _room_check_prompt() -> str:
    """The system prompt the custom-tool router checks the room tool with (its own path to it)."""
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    from voicebot.services.tool_router import CustomToolRouter

    schema = FunctionSchema(name=ROOM_TOOL["name"], description=ROOM_TOOL["description"],
                            properties=ROOM_TOOL["parameters"]["properties"],
                            required=ROOM_TOOL["parameters"]["required"])
    return CustomToolRouter([schema]).cards[0].prompt()


def test_the_worker_warms_every_local_model_and_reads_the_assistants_prompts(settings, caplog):
    settings.VOICE_WARM_MODELS = True
    prompt = compose_prompt(PROMPT, "Marlow")
    check = _room_check_prompt()
    with caplog.at_level(logging.INFO, logger="voicebot.services"):
        bundle = load_bundle([prompt, check])
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
        # ...and the first check of the assistant's custom tool finds the tool's own prompt there.
        checked = httpx.post(f"{bundle.llm_base_url}/chat/completions", timeout=120, json={
            "model": bundle.llm_model, "max_tokens": 2, "cache_prompt": True,
            "messages": [{"role": "system", "content": check}, {"role": "user", "content": "Two nights, please."},
                         {"role": "assistant", "content": '{"request":'}]})
        timings = checked.raise_for_status().json()["timings"]
        assert timings["cache_n"] >= 80 and timings["prompt_n"] <= 20, timings
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


@pytest.mark.django_db
def test_the_check_prompts_to_warm_are_those_of_the_voice_assistants_enabled_tools():
    marlow = AssistantRecord.objects.create(name="Marlow", slug="marlow", persona="Marlow", system_prompt=PROMPT)
    off = AssistantRecord.objects.create(name="Off", slug="off", voice_enabled=False)
    common = {"url": "https://tools.example.com/x", "secret": "whsec_warm_0000", "timeout_seconds": 5,
              "max_retries": 1}
    marlow.tools.create(**ROOM_TOOL, **common)
    marlow.tools.create(name="late_checkout", description="Ask for a late checkout.", parameters={},
                        enabled=False, **common)
    off.tools.create(name="never_checked", description="Never used.", parameters={}, **common)
    assert tool_check_prompts(4) == [_room_check_prompt()]  # the very text the router's check sends
    assert tool_check_prompts(0) == []  # no slot left after the conversations' prompts


def _first_request_messages(llm, question: str) -> list[dict]:
    """The messages the session's LLM sends for a first question (Pipecat's own path to the request)."""
    import asyncio

    from pipecat.processors.aggregators.llm_context import LLMContext

    async def build() -> list[dict]:
        context = LLMContext(messages=[{"role": "user", "content": question}])
        llm._sync_registered_tool_handlers(context.tools)  # what the service does on every context frame
        params = await llm.get_llm_adapter().get_llm_invocation_params(
            context, system_instruction=llm._settings.system_instruction,
            convert_developer_to_user=not llm.supports_developer_role)
        return llm.build_chat_completion_params(params)["messages"]

    return asyncio.run(build())


def test_a_local_session_asks_with_the_very_prompt_the_worker_warmed():
    """The first turn finds its system prompt in llama.cpp's cache only if the session sends the
    same text the warm-up read: Pipecat appends ~150 tokens of async-tool guidance to it once a
    tool is registered with cancel_on_interruption=False (the notes tools, end_call), and that
    made every first turn read the whole prompt again (3.3 s to the first token, not 0.4 s)."""
    from voicebot.behaviour import register_end_call_tool
    from voicebot.services.llm import VoiceLLMService
    from voicebot.tools import register_notes_tools

    prompt = compose_prompt(PROMPT, "Marlow")
    llm = VoiceLLMService(base_url="http://127.0.0.1:9/v1", api_key="local", model="local", system_prompt=prompt,
                          notes_router=True, local=True)
    register_notes_tools(llm, user_id=1, session_id="s")
    register_end_call_tool(llm, lambda: None)
    messages = _first_request_messages(llm, "Hi, any rooms?")
    assert messages[0] == {"role": "system", "content": prompt}


def test_a_model_that_calls_tools_itself_keeps_pipecats_async_tool_guidance():
    """A hosted model calls the tools itself, and a result may come after it spoke: it needs the guidance."""
    from pipecat.processors.aggregators.async_tool_messages import ASYNC_TOOL_INSTRUCTIONS

    from voicebot.services.llm import VoiceLLMService
    from voicebot.tools import register_notes_tools

    llm = VoiceLLMService(base_url="http://127.0.0.1:9/v1", api_key="k", model="gpt-4.1-mini", system_prompt=PROMPT,
                          notes_router=False, local=False)
    register_notes_tools(llm, user_id=1, session_id="s")
    system = _first_request_messages(llm, "Hi, any rooms?")[0]["content"]
    assert system.startswith(PROMPT) and ASYNC_TOOL_INSTRUCTIONS in system


def test_warming_whisper_decodes_a_few_tokens_not_every_temperature():
    """Whisper base hears "You" in a second of silence and, with faster-whisper's defaults, decodes
    it again at every fallback temperature: 7.2 s of the worker's start, against 60 ms bounded."""
    from types import SimpleNamespace

    from voicebot.services import warm_up

    calls: list[dict] = []

    class Spy:
        def transcribe(self, audio, **kwargs):
            calls.append(kwargs)
            return iter(()), None

    bundle = SimpleNamespace(stt_model=Spy(), local_llm=False, llm_server=None, tts_engine=None)
    assert "stt" in warm_up(bundle)
    (kwargs,) = calls
    assert kwargs["max_new_tokens"] <= 8 and kwargs["temperature"] == 0.0 and kwargs["language"] == "en"


class _ReadingBundle:
    """A local-LLM bundle that records the prompts the worker has it read (the real read is the test above)."""

    local_llm = True

    def __init__(self) -> None:
        self.read: list[str] = []

    def prime_llm(self, prompt: str) -> None:
        self.read.append(prompt)


@pytest.mark.django_db(transaction=True)
def test_a_tool_added_while_the_worker_runs_is_read_once_the_worker_is_idle(monkeypatch):
    import asyncio

    from channels.db import database_sync_to_async

    from voicebot import worker as worker_module
    from voicebot.worker import BotWorkerProcess

    monkeypatch.setattr(worker_module, "NEW_PROMPTS_EVERY", 0.0)  # every heartbeat looks (30 s in service)

    marlow = AssistantRecord.objects.create(name="Marlow", slug="marlow", persona="Marlow", system_prompt=PROMPT)
    worker = BotWorkerProcess(pool_size=2)
    worker.bundle = bundle = _ReadingBundle()
    worker.warmed_prompts.add(compose_prompt(PROMPT, "Marlow"))  # read at start

    async def heartbeat_reads() -> list[str]:
        """What one heartbeat's reading hands the LLM, once it is done."""
        before = len(bundle.read)
        await worker._read_new_prompts()
        if worker._reading is not None:
            await asyncio.wait_for(worker._reading, 10)
        return bundle.read[before:]

    async def heartbeats() -> None:
        assert await heartbeat_reads() == []  # nothing new
        await database_sync_to_async(marlow.tools.create)(**ROOM_TOOL, url="https://tools.example.com/x",
                                                          secret="whsec_warm_0000")
        worker.sessions = {"s1": object()}
        assert await heartbeat_reads() == []  # a session runs: its answers keep the CPU
        worker.sessions = {}
        assert await heartbeat_reads() == [_room_check_prompt()]  # idle: the new tool's check prompt is read
        assert await heartbeat_reads() == []  # ...once
        # A session that starts during a read stops it: the prompts not yet read wait for the next idle heartbeat.
        await database_sync_to_async(marlow.tools.create)(name="late_checkout", description="Ask for a late checkout.",
                                                          parameters={}, url="https://tools.example.com/y",
                                                          secret="whsec_warm_0001")
        bundle.prime_llm = lambda prompt: (bundle.read.append(prompt), worker.sessions.update(s2=object()))
        await database_sync_to_async(marlow.tools.create)(name="spa_booking", description="Book the spa.",
                                                          parameters={}, url="https://tools.example.com/z",
                                                          secret="whsec_warm_0002")
        assert len(await heartbeat_reads()) == 1  # two new prompts; the session came after the first
        worker.sessions = {}
        assert len(await heartbeat_reads()) == 1  # the other, at the next idle heartbeat

    asyncio.run(heartbeats())


@pytest.mark.django_db(transaction=True)
def test_an_idle_worker_reads_every_tools_check_prompt_not_only_those_the_slots_left_room_for(monkeypatch):
    """At start the worker reads as many check prompts as its LLM has slots left (it is not ready until
    they are read); llama.cpp keeps every prompt read in its host-memory cache, so once idle it reads
    the rest, and an assistant's fifth tool is not read while its user waits."""
    import asyncio

    from voicebot import worker as worker_module
    from voicebot.services.llm import LOCAL_SLOTS
    from voicebot.worker import BotWorkerProcess

    monkeypatch.setattr(worker_module, "NEW_PROMPTS_EVERY", 0.0)
    marlow = AssistantRecord.objects.create(name="Marlow", slug="marlow", persona="Marlow", system_prompt=PROMPT)
    names = [f"tool_{n}" for n in range(LOCAL_SLOTS + 2)]
    for name in names:
        marlow.tools.create(name=name, description=f"Does {name}.", parameters={},
                            url="https://tools.example.com/x", secret="whsec_warm_0000")
    worker = BotWorkerProcess(pool_size=2)
    worker.bundle = bundle = _ReadingBundle()

    async def start_then_idle() -> tuple[list[str], list[str]]:
        at_start = await worker._likely_prompts()
        worker.warmed_prompts.update(at_start)  # what run() does once load_bundle has read them
        await worker._read_new_prompts()
        await asyncio.wait_for(worker._reading, 10)
        return at_start, bundle.read

    at_start, when_idle = asyncio.run(start_then_idle())
    assert len(at_start) == LOCAL_SLOTS  # Marlow's prompt and the tools' in the slots left
    checked = lambda prompts: {name for name in names if any(f"The tool: {name}." in p for p in prompts)}  # noqa: E731
    assert len(checked(at_start)) == LOCAL_SLOTS - 1
    assert checked(at_start) | checked(when_idle) == set(names) and not checked(at_start) & checked(when_idle)
