"""The bot end to end, offline, with no browser: a WebRTC peer speaks a question into the
room through the real signalling endpoint and gets a spoken answer and transcripts."""
from __future__ import annotations

import asyncio

import pytest

from tests.botharness import (BOT_ENV, active_session, end_sessions, is_answer, is_final_transcript, is_start_message,
                              is_status, speak_to_wav, start_worker, stop_worker)
from tests.livesrv import start_server
from tests.waiting import await_until, heard_answer
from voicebot.peer import BotPeer

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("bot")
    # As a busy worker hears its users, in 40 ms frames (mediapath.InputFrames) from the first
    # heartbeat of a session on; the other real-audio tests hear them as an idle worker does, in 20 ms.
    server = start_server(var, {**BOT_ENV, "VOICE_INPUT_LONG_FRAMES_LOAD": "0"})
    worker = start_worker(server, "--pool-size", "2")
    yield server, worker, var
    stop_worker(worker)
    server.stop()


@pytest.fixture(autouse=True)
def own_session(request):
    """Each test on the shared stack starts with no live session, whatever the test before it left."""
    yield
    if "stack" in request.fixturenames:
        end_sessions(request.getfixturevalue("stack")[0])


def test_spoken_question_gets_a_spoken_answer_and_transcripts(stack):
    server, worker, var = stack
    # Not "What is the capital of France?": with the encoder window cut to the audio (the default),
    # tiny.en hears espeak-ng's "capital of France" as "capital and friends", though the window
    # hears 68 sentences better overall (bench/bench_stt_window.py, docs/benchmarks.md).
    question = speak_to_wav("What is the capital of Germany?", var / "question.wav")

    async def scenario() -> None:
        client, peer, session_id = await active_session(server, persistence=2, expect_new=True)
        await await_until(lambda: "the user's audio in 40 ms frames" in open(worker.log.name).read(), 10,
                          "the worker's log of its longer input frames")  # the question is heard in them
        peer.say_wav(str(question))

        user = await client.wait_for(is_final_transcript("user"), 30, "final user transcript")
        assert "capital" in user["payload"]["text"].lower() and "germany" in user["payload"]["text"].lower()
        bot = await client.wait_for(is_final_transcript("assistant"), 30, "assistant transcript")
        assert "berlin" in bot["payload"]["text"].lower()  # "Berlin." alone is a whole answer
        speaking = await client.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"]["speaking"],
                                         30, "bot speaking")
        assert speaking["payload"]["latency"]["totalMs"] > 0
        print("voice-to-voice latency:", speaking["payload"]["latency"])
        await heard_answer(peer)
        peer.heard.write_wav(str(var / "answer.wav"))
        # The answer came as Opus packets the session's track encoded (voicebot/mediapath.py).
        assert "output audio as Opus packets" in open(worker.log.name).read()
        types = {e["type"] for e in client.events}
        assert {"voice.speech.start", "voice.speech.end", "voice.audio.level"} <= types

        await peer.close()  # the user leaves; the bot waits sessionPersistence (2 s), then goes
        await client.wait_for(is_status("inactive"), 15, "session inactive after the peer left")
        end = await client.wait_for(lambda e: e["type"] == "voice.session.end", 20, "session end")
        assert end["payload"]["endReason"] == "persistence_elapsed"
        await client.close()

    asyncio.run(scenario())


async def _end(client, peer) -> None:
    await peer.close()
    client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
    await client.close()


def test_typed_message_uses_the_notes_tool_and_is_answered_in_speech(stack):
    server, worker, var = stack

    async def scenario() -> None:
        client, peer, session_id = await active_session(server)
        await client.ws.send('{"type": "user-message", "content": "Take a note called shopping saying buy milk"}')
        call = await client.wait_for(lambda e: e["type"] == "voice.tool.call", 20, "tool call")
        assert call["payload"]["name"] == "create_note"
        assert call["payload"]["arguments"] == {"title": "shopping", "body": "buy milk"}
        result = await client.wait_for(lambda e: e["type"] == "voice.tool.result", 20, "tool result")
        assert result["payload"]["result"]["ok"] is True
        said = await client.wait_for(lambda e: is_final_transcript("assistant")(e) and "shopping" in
                                     e["payload"]["text"], 20, "spoken confirmation")
        assert "saved" in said["payload"]["text"]
        stored = server.manage("shell", "-c", "from voicebot.models import Note; "
                               "print([(n.user.username, n.title, n.body) for n in Note.objects.all()])")
        assert "('demo', 'shopping', 'buy milk')" in stored

        await client.ws.send('{"type": "user-message", "content": "What notes do I have?"}')
        listed = await client.wait_for(lambda e: e["type"] == "voice.tool.result" and
                                       e["payload"]["name"] == "list_notes", 20, "list result")
        assert [n["title"] for n in listed["payload"]["result"]["notes"]] == ["shopping"]
        await client.wait_for(lambda e: is_final_transcript("assistant")(e) and "1 note" in e["payload"]["text"],
                              20, "spoken list")
        await heard_answer(peer)
        await _end(client, peer)

    asyncio.run(scenario())


def test_paused_session_does_not_listen_until_resumed(stack):
    server, worker, var = stack
    question = speak_to_wav("What is the capital of France?", var / "question-pause.wav")

    async def scenario() -> None:
        client, peer, session_id = await active_session(server)
        await client.ws.send('{"type": "dailyCall.session.start"}')
        await client.wait_for(is_status("paused"), 10, "paused")
        peer.say_wav(str(question))
        # Wait until the whole question has gone out while paused (no fixed sleep).
        await await_until(lambda: not len(peer.mic.pending), 20, "the paused question to be sent")
        await client.ws.send('{"type": "dailyCall.session.end"}')
        resumed = await client.wait_for(is_status("active"), 10, "resumed")
        peer.say_wav(str(question))
        await client.wait_for(is_final_transcript("user"), 30, "transcript after resume")
        # The pipeline handles audio in order: had the paused question been heard, its transcript
        # would be here too, before the resumed one.
        heard = [e for e in client.events if is_final_transcript("user")(e)]
        assert len(heard) == 1 and client.events.index(heard[0]) > client.events.index(resumed), \
            "a paused bot transcribed speech"
        await _end(client, peer)

    asyncio.run(scenario())


def test_max_duration_ends_the_session_and_the_bot_leaves(stack):
    server, worker, var = stack
    server.manage("shell", "-c", "from assistants.models import AssistantRecord as A; "
                  "a = A.objects.get(slug='pearl'); a.voice_max_duration = 4; a.save()")
    try:
        async def scenario() -> None:
            client, peer, session_id = await active_session(server)
            end = await client.wait_for(lambda e: e["type"] == "voice.session.end", 20, "session end")
            assert end["payload"]["endReason"] == "max_duration" and end["sessionId"] == session_id
            # The worker reaps the bot on its next heartbeat.
            await await_until(lambda: any(f"session={session_id} bot left" in line for line in open(worker.log.name)),
                              20, "the bot to leave")
            await _end(client, peer)

        asyncio.run(scenario())
    finally:
        server.manage("shell", "-c", "from assistants.models import AssistantRecord as A; "
                      "a = A.objects.get(slug='pearl'); a.voice_max_duration = 3600; a.save()")


def test_killed_worker_makes_the_session_unavailable_and_a_new_join_works(tmp_path):
    """kill -9 the worker holding the bot: the user is told, and the next join lands on a live worker."""
    import signal

    server = start_server(tmp_path, BOT_ENV)
    first = start_worker(server, "--pool-size", "1", "--worker-id", "doomed")
    try:
        async def scenario() -> None:
            client, peer, session_id = await active_session(server)
            survivor = await asyncio.to_thread(start_worker, server, "--pool-size", "1", "--worker-id", "survivor")
            try:
                first.send_signal(signal.SIGKILL)
                error = await client.wait_for(lambda e: e["type"] == "voice.error", 20, "voice.error")
                assert error["payload"]["code"] == "worker_lost" and error["sessionId"] == session_id
                await client.wait_for(is_status("unavailable"), 5, "unavailable")
                await peer.close()
                room = client.http.post("/api/voice/room", json={}).json()
                assert room["reused"] is True  # the room stays usable
                join = client.http.post("/api/bot/join", json={"voiceOnly": True})
                assert join.status_code == 202 and join.json()["sessionId"] != session_id
                peer2 = BotPeer(server.url, room["token"])
                await peer2.connect()
                await client.wait_for(lambda e: is_status("active")(e) and e["sessionId"] == join.json()["sessionId"],
                                      20, "new session active")
                detail = client.http.get(f"/api/voice/sessions/{join.json()['sessionId']}").json()
                assert detail["botWorkerId"] == "survivor"
                await _end(client, peer2)
            finally:
                survivor.terminate()
                survivor.wait(timeout=20)

        asyncio.run(scenario())
    finally:
        if first.poll() is None:
            first.kill()
        server.stop()


def test_talking_over_the_bot_interrupts_it(stack):
    server, worker, var = stack
    long_ask = speak_to_wav("Tell me a long story about a dragon and a knight.", var / "story.wav")
    barge = speak_to_wav("Stop. What is two plus two?", var / "barge.wav")

    async def scenario() -> None:
        client, peer, session_id = await active_session(server)
        peer.say_wav(str(long_ask))
        await client.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"]["speaking"], 40,
                              "bot starts its story")
        await heard_answer(peer, frames=5)  # the story is reaching the user's ears
        mark = len(client.events)
        peer.say_wav(str(barge))
        spoke = await client.wait_for(lambda e: client.events.index(e) >= mark and e["type"] == "voice.speech.start",
                                      10, "user speech start over the bot")
        stopped = await client.wait_for(lambda e: client.events.index(e) >= mark and
                                        e["type"] == "voice.bot.speaking" and not e["payload"]["speaking"],
                                        10, "bot stops speaking")
        gap = (_ts(stopped) - _ts(spoke)).total_seconds()
        assert gap < 1.5, f"the bot kept talking {gap:.2f}s over the user"
        await client.wait_for(lambda e: client.events.index(e) >= mark and is_final_transcript("user")(e)
                              and "plus" in e["payload"]["text"].lower(), 30, "the interrupting question heard")
        await _end(client, peer)

    asyncio.run(scenario())


def _ts(event):
    import datetime as dt

    return dt.datetime.fromisoformat(event["timestamp"])


def test_bogus_offers_and_bare_tokens_leave_the_live_call_alone(stack):
    """A hostile offer during a real call: refused with a 400 before the worker sees it; a second
    peer with only the room token cannot take the call over (409); the owner's own new peer (a
    reload) can, and the replaced connection's end does not tear the new one down."""
    import httpx

    server, worker, var = stack
    question = speak_to_wav("What is the capital of France?", var / "question-hostile.wav")

    async def scenario() -> None:
        client, peer, session_id = await active_session(server)
        room = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for sdp in ("v=0\r\n", "hello world", 5):
                bogus = await http.post("/api/voice/webrtc/offer", json={"sdp": sdp, "type": "offer"},
                                        headers={"Authorization": f"Bearer {room['token']}"})
                assert bogus.status_code == 400 and "sdp" in bogus.json()["fields"], bogus.text
        intruder = BotPeer(server.url, room["token"])
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await intruder.connect()
        assert refused.value.response.status_code == 409
        assert refused.value.response.json()["error"] == "connection_in_use"
        await intruder.close()

        # The live call still hears and answers.
        peer.say_wav(str(question))
        await client.wait_for(is_final_transcript("user"), 30, "the live call still transcribes")
        await heard_answer(peer)
        detail = client.http.get(f"/api/voice/sessions/{session_id}").json()
        assert detail["status"] == "active"

        # The owner reloads: the new peer replaces the old one and keeps working.
        mark = len(client.events)
        reload = BotPeer(server.url, room["token"], user_token=client.key)
        await reload.connect()
        await peer.close()
        reload.say_wav(str(question))
        await client.wait_for(lambda e: client.events.index(e) >= mark and is_final_transcript("user")(e),
                              30, "the reloaded peer is heard")
        await heard_answer(reload)
        assert not [e for e in client.events[mark:] if is_status("inactive")(e)], "the new connection was torn down"
        await _end(client, reload)

    asyncio.run(scenario())


def test_the_offline_model_reaches_an_assistants_custom_tool(stack):
    """Issue 12: "any tool the assistant has" on the offline default. The local model cannot call
    tools, so the custom-tool router (tool_router.py) spots the request with the real encoder and
    llama.cpp, the endpoint gets the signed call, and the model answers from its result; a request
    without the order number is answered with a question, and the next turn's number makes the call."""
    import json

    from tests.botharness import in_server
    from tests.fakes.receiver import SignedReceiver

    server, worker, var = stack
    secret = "whsec_offline_tool_7d2c"
    schema = {"type": "object", "required": ["order_number"],
              "properties": {"order_number": {"type": "string", "description": "The order number"}}}
    with SignedReceiver(secret, reply={"result": {"status": "shipped on Tuesday"}}) as endpoint:
        in_server(server, "A.objects.get(slug='pearl').tools.create(name='check_order_status', "
                      "description=\"Look up the delivery status of a customer's order by its order number.\", "
                  f"parameters={schema!r}, url='{endpoint.url}/order', secret='{secret}', "
                  "timeout_seconds=10, max_retries=1)")
        try:
            async def scenario() -> tuple[dict, list[dict]]:
                client, peer, session_id = await active_session(server, expect_new=True)

                async def say(text: str) -> int:
                    mark = len(client.events)
                    await client.ws.send(json.dumps({"type": "user-message", "content": text}))
                    return mark

                def after(mark: int, predicate):
                    return lambda e: client.events.index(e) >= mark and predicate(e)

                mark = await say("What is the capital of Germany?")  # chat: no tool
                await client.wait_for(after(mark, is_final_transcript("assistant")), 60, "the chat answer")
                mark = await say("What is the status of my order 4512?")
                call = await client.wait_for(after(mark, lambda e: e["type"] == "voice.tool.call"), 60, "the call")
                assert call["payload"]["name"] == "check_order_status"
                assert call["payload"]["arguments"] == {"order_number": "4512"}
                await client.wait_for(after(mark, lambda e: e["type"] == "voice.tool.result"), 30, "the result")
                answer = await client.wait_for(after(mark, is_answer), 60, "the answer")
                # Said while the endpoint and the model worked; on the page, not in the model's conversation.
                held = [e["payload"]["text"] for e in client.events[mark:client.events.index(answer)]
                        if is_start_message(e)]
                assert held == ["One moment."]
                mark = await say("Please look up the delivery status of my order.")
                question = await client.wait_for(after(mark, is_final_transcript("assistant")), 60, "a question")
                assert question["payload"]["text"] == "Sure. What is the order number?"
                assert not [e for e in client.events[mark:] if e["type"] == "voice.tool.call"]
                mark = await say("It is 7781.")
                second = await client.wait_for(after(mark, lambda e: e["type"] == "voice.tool.call"), 60, "the call")
                assert second["payload"]["arguments"] == {"order_number": "7781"}
                await client.wait_for(after(mark, is_answer), 60, "the second answer")
                calls = [e for e in client.events if e["type"] == "voice.tool.call"]
                await _end(client, peer)
                return answer, calls

            answer, calls = asyncio.run(scenario())
        finally:
            in_server(server, "A.objects.get(slug='pearl').tools.all().delete()")
    assert len(calls) == 2  # the chat turn and the question called nothing
    received = endpoint.signed()
    assert [r.json["arguments"] for r in received] == [{"order_number": "4512"}, {"order_number": "7781"}]
    assert all(r.signed for r in received)
    assert "tuesday" in answer["payload"]["text"].lower()  # the model put the endpoint's answer in words


def test_cold_spawn_mode_serves_a_join(tmp_path):
    """`runbotworker --spawn`: each job gets a fresh `python -m voicebot.bot` that reads its job's row."""
    # A cold bot loads every model before it takes the offer: on a busy 2-core machine that
    # took longer than the default 20 s the offer waits.
    server = start_server(tmp_path, {**BOT_ENV, "VOICE_OFFER_WAIT_SECONDS": "90"})
    parent = start_worker(server, "--spawn", "--pool-size", "1", "--worker-id", "cold")
    try:
        async def scenario() -> None:
            client, peer, session_id = await active_session(server, expect_new=True)
            detail = client.http.get(f"/api/voice/sessions/{session_id}").json()
            assert detail["botWorkerId"].startswith("cold-spawn-")
            await _end(client, peer)

        asyncio.run(scenario())
    finally:
        parent.terminate()
        parent.wait(timeout=20)
        server.stop()
