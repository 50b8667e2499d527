"""Each session's requests go to its own llama.cpp slot (`SlotPool`, `id_slot`).

Unpinned, a request sent while the session's slot was still busy with a withdrawn answer went to
another slot that held none of the conversation: 716 tokens read again, 10.9 s to the first word
on the conversation bench (2026-12-07)."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from voicebot.services.llm import SlotPool, VoiceLLMService


def test_the_pool_lends_the_lowest_free_slot_and_none_when_all_are_lent():
    pool = SlotPool(2)
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == [0, 1, None]
    pool.release(0)
    pool.release(0)  # twice: still one slot 0
    pool.release(None)  # a session that got none
    assert [pool.acquire(), pool.acquire()] == [0, None]


def test_the_bundle_gives_the_session_llm_its_slot_only_on_the_local_model():
    from voicebot.services import ModelBundle

    async def build(bundle: ModelBundle) -> VoiceLLMService:
        llm = bundle.make_llm(system_prompt="Be brief.", slot=1)
        await bundle.aclose()
        return llm

    local = ModelBundle(llm_base_url="http://127.0.0.1:9/v1", llm_api_key="local", llm_model="local", local_llm=True)
    hosted = ModelBundle(llm_base_url="https://api.example.com/v1", llm_api_key="sk-x", llm_model="m", local_llm=False)
    assert asyncio.run(build(local)).slot == 1
    assert asyncio.run(build(hosted)).slot is None  # a hosted API knows no slots


@pytest.fixture(scope="module")
def server():
    from voicebot.services.llm import start_local_server

    server, url = start_local_server(parallel=2)
    yield url
    del server


def _slots(url: str) -> list[dict]:
    return httpx.get(url.removesuffix("/v1") + "/slots", timeout=30).json()


def test_a_sessions_reads_ahead_go_to_its_slot(server):
    """Both ways the user's words are read while they speak (a chat request, and the open-ended
    /completion read) name the session's slot; the other slot is never used."""
    llm = VoiceLLMService(base_url=server, api_key="local", model="local", notes_router=True,
                          system_prompt="You are Pearl, a helpful voice assistant. Be brief.")
    llm.slot = 1
    conversation = [{"role": "user", "content": "Hello Pearl."}, {"role": "assistant", "content": "Hello! How can I help?"}]

    async def reads() -> None:
        try:
            await llm._read_now([*conversation, {"role": "user", "content": "What is the capital"}])
            first = _slots(server)[1]["id_task"]
            await llm._read_now([*conversation, {"role": "user", "content": "What is the capital of"}], open_end=True)
            assert _slots(server)[1]["id_task"] > first  # the open-ended read, in the same slot
        finally:
            await llm._client.close()

    asyncio.run(reads())
    idle, used = _slots(server)
    assert "id_task" not in idle, idle  # slot 0 never had a task
    assert used["n_prompt_tokens"] > 20 and not used["is_processing"]
