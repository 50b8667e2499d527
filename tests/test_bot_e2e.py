"""The bot end to end, offline, with no browser: a WebRTC peer speaks a question into the
room through the real signalling endpoint and gets a spoken answer and transcripts."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.botharness import BOT_ENV, Client, is_final_transcript, is_status, speak_to_wav, start_worker
from tests.livesrv import start_server
from voicebot.peer import BotPeer

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("bot")
    server = start_server(var, BOT_ENV)
    worker = start_worker(server, "--pool-size", "2")
    yield server, worker, var
    worker.terminate()
    worker.wait(timeout=20)
    server.stop()


def test_spoken_question_gets_a_spoken_answer_and_transcripts(stack):
    server, worker, var = stack
    question = speak_to_wav("What is the capital of France?", var / "question.wav")

    async def scenario() -> None:
        client = Client(server)
        await client.open_ws()
        room = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                        "sessionPersistence": 2})
        assert join.status_code == 202, join.text
        peer = BotPeer(server.url, room["token"])
        answer = await peer.connect()
        assert answer["sessionId"] == join.json()["sessionId"]
        await client.wait_for(is_status("active"), 20, "session active")
        peer.say_wav(str(question))

        user = await client.wait_for(is_final_transcript("user"), 30, "final user transcript")
        assert "capital" in user["payload"]["text"].lower() and "france" in user["payload"]["text"].lower()
        bot = await client.wait_for(is_final_transcript("assistant"), 30, "assistant transcript")
        assert len(bot["payload"]["text"].split()) >= 2
        speaking = await client.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"]["speaking"],
                                         30, "bot speaking")
        assert speaking["payload"]["latency"]["totalMs"] > 0
        await asyncio.sleep(2.0)  # let the answer play
        assert peer.heard.loud_frames > 10, "the bot's answer was silent"
        peer.heard.write_wav(str(var / "answer.wav"))
        types = {e["type"] for e in client.events}
        assert {"voice.speech.start", "voice.speech.end", "voice.audio.level"} <= types

        await peer.close()  # the user leaves; the bot waits sessionPersistence (2 s), then goes
        await client.wait_for(is_status("inactive"), 15, "session inactive after the peer left")
        end = await client.wait_for(lambda e: e["type"] == "voice.session.end", 20, "session end")
        assert end["payload"]["endReason"] == "persistence_elapsed"
        await client.close()

    asyncio.run(scenario())
