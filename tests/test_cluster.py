"""The service spread over hosts of its own (issue 16): tests/cluster.py builds them from
network namespaces on this machine; every request and packet below crosses a bridge."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.botharness import Client, is_final_transcript, is_status, speak_to_wav
from tests.cluster import Cluster
from tests.waiting import heard_answer
from voicebot.peer import BotPeer

pytestmark = [pytest.mark.server, pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                 reason="network namespaces need root and iproute2")]
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster().up()
    try:
        c.start_data_stores()
        c.manage("web1", "migrate", "-v0")
        c.manage("web1", "seed_demo")
        c.web = {host: c.start_web(host) for host in ("web1", "web2")}  # type: ignore[attr-defined]
        c.bots = {"bot2": c.start_bot("bot2", QUESTION)}  # type: ignore[attr-defined]
        yield c
    finally:
        c.down()


def test_the_hosts_reach_each_other_only_over_the_bridge(cluster):
    """Each server answers on its own address from the client's host, and a cut link is a cut link."""
    web1 = cluster.web["web1"]
    assert web1.get("/api/voice/config").status_code == 401  # served, and signed-in users only
    cluster.cut("web1")
    try:
        with pytest.raises(Exception):
            web1.get("/api/voice/config", timeout=2)
    finally:
        cluster.heal("web1")
    assert web1.get("/api/voice/config").status_code == 401


def test_a_user_signed_in_through_web1_talks_to_the_bot_on_bot2_and_web2_tells_them(cluster, tmp_path):
    web1, web2 = cluster.web["web1"], cluster.web["web2"]
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")

    async def scenario() -> dict:
        on_web2 = Client(web2)  # the browser's websocket is held by web2...
        await on_web2.open_ws()
        via_web1 = Client(web1)  # ...while its API calls and signalling go to web1
        room = via_web1.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        join = via_web1.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                          "sessionPersistence": 2})
        assert join.status_code == 202, join.text
        peer = BotPeer(web1.url, room["token"], hosts=[cluster.ip("client")])
        answer = await peer.connect()
        await on_web2.wait_for(is_status("active"), 30, "active, seen on web2")
        peer.say_wav(str(question))
        user = await on_web2.wait_for(is_final_transcript("user"), 30, "the user's transcript on web2")
        bot = await on_web2.wait_for(is_final_transcript("assistant"), 30, "the bot's answer on web2")
        await heard_answer(peer)  # its speech came over WebRTC from bot2's address
        detail = via_web1.http.get(f"/api/voice/sessions/{join.json()['sessionId']}").json()
        via_web1.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await on_web2.wait_for(lambda e: e["type"] == "voice.session.end", 30, "the session's end on web2")
        await peer.close()
        await via_web1.close()
        await on_web2.close()
        return {"answer_sdp": answer["sdp"], "user": user["payload"]["text"], "bot": bot["payload"]["text"],
                "worker": detail["botWorkerId"]}

    seen = cluster.on_client(scenario)
    assert seen["worker"] == "bot2"
    assert f"{cluster.ip('bot2')} " in seen["answer_sdp"]  # the bot offered its own host's address
    assert "127.0.0.1" not in seen["answer_sdp"]
    assert "france" in seen["user"].lower() and seen["bot"]
