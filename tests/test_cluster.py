"""The service spread over hosts of its own (issue 16): tests/cluster.py builds them from
network namespaces on this machine; every request and packet below crosses a bridge."""
from __future__ import annotations

import asyncio
import os
import shutil

import httpx
import pytest

from tests.botharness import Client, is_final_transcript, is_status, speak_to_wav
from tests.cluster import Cluster
from tests.livesrv import users_with_tokens
from tests.waiting import await_until, heard_answer
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


async def _join(cluster, via: Client) -> tuple[dict, BotPeer, dict]:
    """Through `via`'s server: the user's room, a bot joined (202), and a WebRTC peer on the
    client host connected to it. Returns the join's answer, the peer and the SDP answer."""
    room = via.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
    join = via.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True, "sessionPersistence": 2})
    assert join.status_code == 202, join.text
    peer = BotPeer(via.server.url, room["token"], hosts=[cluster.ip("client")])
    answer = await peer.connect()
    return join.json(), peer, answer


async def _active_session(cluster) -> tuple[Client, Client, dict, BotPeer, str]:
    """A user whose websocket is on web2 while their API calls and signalling go to web1, with a
    session active. Returns the two clients, the join's answer, the peer and the bot's worker."""
    on_web2 = Client(cluster.web["web2"])
    await on_web2.open_ws()
    via_web1 = Client(cluster.web["web1"])
    join, peer, _ = await _join(cluster, via_web1)
    await on_web2.wait_for(lambda e: is_status("active")(e) and e.get("sessionId") == join["sessionId"], 30,
                           "active, seen on web2")
    worker = via_web1.http.get(f"/api/voice/sessions/{join['sessionId']}").json()["botWorkerId"]
    return on_web2, via_web1, join, peer, worker


async def _leave(via: Client, watcher: Client, session_id: str) -> None:
    """The user leaves the room at once (through `via`); `watcher`'s socket sees the session end."""
    via.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
    await watcher.wait_for(lambda e: e["type"] == "voice.session.end" and e.get("sessionId") == session_id, 30,
                           "the session's end")


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
        join, peer, answer = await _join(cluster, via_web1)
        await on_web2.wait_for(is_status("active"), 30, "active, seen on web2")
        peer.say_wav(str(question))
        user = await on_web2.wait_for(is_final_transcript("user"), 30, "the user's transcript on web2")
        bot = await on_web2.wait_for(is_final_transcript("assistant"), 30, "the bot's answer on web2")
        await heard_answer(peer)  # its speech came over WebRTC from bot2's address
        detail = via_web1.http.get(f"/api/voice/sessions/{join['sessionId']}").json()
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


def _rows(cluster, code: str) -> str:
    """Django code run on web1 against the cluster's database (`S` VoiceSession, `W` BotWorker, `V` SessionEvent)."""
    out = cluster.manage("web1", "shell", "-c", "from voicesessions.models import VoiceSession as S, "
                         "BotWorker as W, SessionEvent as V; " + code)
    return out.strip().splitlines()[-1] if out.strip() else ""


def test_a_worker_cut_off_mid_session_loses_it_to_the_other_and_cannot_write_to_it_when_back(cluster, tmp_path):
    """Scenario 2: the session turns unavailable within the dead-worker window and the user is told;
    a new join is served by the other worker; when the link comes back, the cut-off worker neither
    brings the old session back nor writes to it (fencing)."""
    import time

    from tests.waiting import wait_until

    if "bot1" not in cluster.bots:
        cluster.bots["bot1"] = cluster.start_bot("bot1", QUESTION)
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")
    figures: dict = {}

    async def scenario() -> None:
        on_web2, via_web1, join, peer, victim = await _active_session(cluster)
        figures["session"] = join["sessionId"]
        figures["victim"], figures["survivor"] = victim, ("bot1" if victim == "bot2" else "bot2")
        # Cut while the bot answers: it goes on making events (its speech, levels, the transcript)
        # that cannot reach the database, and must never land there later.
        peer.say_wav(str(question))
        await on_web2.wait_for(lambda e: e["type"] == "voice.bot.speaking" and e["payload"].get("speaking"), 30,
                               "the bot speaking")
        cluster.cut(victim)
        cut_at = time.monotonic()
        lost = await on_web2.wait_for(lambda e: e["type"] == "voice.error" and e.get("sessionId") == join["sessionId"]
                                      and e["payload"].get("code") == "worker_lost", 30, "worker_lost on web2")
        figures["detect_s"] = time.monotonic() - cut_at
        figures["lost_event_id"] = lost["id"]
        assert via_web1.http.get(f"/api/voice/sessions/{join['sessionId']}").json()["status"] == "unavailable"
        await peer.close()
        # Start again: the room is still the user's, and the other worker answers.
        asked_at = time.monotonic()
        again, peer, _ = await _join(cluster, via_web1)
        await on_web2.wait_for(lambda e: is_status("active")(e) and e.get("sessionId") == again["sessionId"],
                               30, "the new session active")
        peer.say_wav(str(question))
        await heard_answer(peer)
        figures["replacement_s"] = time.monotonic() - asked_at
        detail = via_web1.http.get(f"/api/voice/sessions/{again['sessionId']}").json()
        figures["new_worker"] = detail["botWorkerId"]
        await peer.close()
        await _leave(via_web1, on_web2, again["sessionId"])
        await via_web1.close()
        await on_web2.close()

    cluster.on_client(scenario)
    assert figures["new_worker"] == figures["survivor"]
    victim, old = figures["victim"], figures["session"]
    cluster.heal(victim)
    # The cut-off worker comes back: it heartbeats again as a new incarnation...
    wait_until(lambda: _rows(cluster, f"print(W.objects.get(worker_id='{victim}').stopped_at is None)") == "True",
               60, "the cut-off worker to register again")
    # ...and its old session is not brought back (the user's leave at the end of the scenario ended
    # it, from web1), and nothing the cut-off worker had queued for it was written.
    status = _rows(cluster, f"s = S.objects.get(pk='{old}'); print(s.status, s.end_reason)")
    assert status.split()[0] in ("unavailable", "ended") and "worker" not in status.split()[-1], status
    late = _rows(cluster, f"print(sorted(set(V.objects.filter(session_id='{old}', id__gt={figures['lost_event_id']})"
                          ".values_list('type', flat=True))))")
    assert late in ("[]", "['voice.session.end']", "['voice.session.end', 'voice.session.status']"), \
        f"the cut-off worker wrote to a session it had lost: {late}"
    print(f"[cluster] lost worker detected in {figures['detect_s']:.1f} s; replacement bot answered "
          f"{figures['replacement_s']:.1f} s after the new join")


def test_a_web_server_cut_off_from_the_database_answers_503_and_its_sockets_move_to_the_other(cluster, tmp_path):
    """Scenario 3: web1 loses db (its clients still reach it). Its API answers 503, never 500; its
    websocket closes instead of staying open and silent; the client reconnects through web2 with
    ?after= and has every event of the session, those made while it moved included."""
    web1, web2 = cluster.web["web1"], cluster.web["web2"]
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")
    seen: dict = {}

    async def scenario() -> None:
        client = Client(web1)  # API, signalling and websocket all on web1 (as a load balancer put it)
        await client.open_ws()
        join, peer, _ = await _join(cluster, client)
        seen["session"] = join["sessionId"]
        await client.wait_for(is_status("active"), 30, "active")
        cluster.cut_between("web1", "db")
        try:
            # In threads: the socket's own reads and pings go on meanwhile, so what closes it is web1.
            config = await asyncio.to_thread(client.http.get, "/api/voice/config")
            rooms = await asyncio.to_thread(client.http.post, "/api/voice/room", json={"assistant": "pearl"})
            seen["statuses"] = (config.status_code, rooms.status_code)
            seen["bodies"] = (config.json(), rooms.json())
            # The bot (on its own host, with the database) goes on: the user speaks meanwhile.
            peer.say_wav(str(question))
            await await_until(lambda: client.reconnects >= 1, 40, "web1 to close the socket")
            client.server = web2  # the load balancer sends the reconnect to the server that can serve it
            await client.wait_for(is_final_transcript("assistant"), 40, "the answer, through web2")
        finally:
            cluster.heal_between("web1", "db")
        await heard_answer(peer)
        await peer.close()
        client.http.close()
        client.http = httpx.Client(base_url=web2.url, timeout=30, headers=dict([client.token_header]))
        client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await client.wait_for(lambda e: e["type"] == "voice.session.end", 30, "the session's end, through web2")
        seen["ids"] = sorted({e["id"] for e in client.events if e.get("sessionId") == join["sessionId"]})
        await client.close()

    cluster.on_client(scenario)
    assert seen["statuses"] == (503, 503), seen
    assert all(isinstance(body, dict) and body.get("error") for body in seen["bodies"]), seen["bodies"]
    stored = _rows(cluster, f"print(sorted(V.objects.filter(session_id='{seen['session']}')"
                            ".values_list('id', flat=True)))")
    assert stored == str(seen["ids"]), f"events stored {stored}, received {seen['ids']}"
    web1_log = (cluster.workdir / "web1-daphne.log").read_text(errors="replace")
    assert " 500 " not in web1_log
    assert "closing the socket so the client reconnects elsewhere" in web1_log  # web1 closed it, on purpose...
    assert "Task exception was never retrieved" not in web1_log  # ...and it did close (1013 was refused)


def _bots(cluster, **env: str) -> dict:
    """bot1 and bot2 running with these extra settings (each restarted when its settings differ)."""
    for host in ("bot1", "bot2"):
        if getattr(cluster, "bot_env", {}).get(host, {}) != env or host not in cluster.bots:
            if host in cluster.bots:
                cluster.stop_host(host)
            cluster.bots[host] = cluster.start_bot(host, QUESTION, **env)
            cluster.bot_env = {**getattr(cluster, "bot_env", {}), host: env}
    return cluster.bots


def _session_events(client: Client, session_id: str) -> list[int]:
    return sorted({e["id"] for e in client.events if e.get("sessionId") == session_id})


def test_a_worker_cut_off_from_the_database_briefly_carries_on_and_loses_no_event(cluster, tmp_path):
    """Scenario 4, a short cut: bot1 or bot2 loses db but not its client. Within its lease the bot
    goes on hearing and answering; its events wait in memory and land once the link is back, in
    order, and the user's websocket gets every one."""
    bots = _bots(cluster, VOICE_WORKER_DEAD_AFTER="30")  # a lease (29 s) no cut below comes near
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")
    seen: dict = {}

    async def scenario() -> None:
        on_web2, via_web1, join, peer, victim = await _active_session(cluster)
        session, seen["session"], seen["victim"] = join["sessionId"], join["sessionId"], victim
        cluster.cut_between(victim, "db")
        try:
            peer.say_wav(str(question))
            await heard_answer(peer, timeout=30)  # over WebRTC, straight from the cut-off worker
            # Its events could not be stored: they wait (the forwarder says so once it tried).
            await await_until(lambda: "database out of reach" in bots[victim].text(), 30,
                              "the worker to hold its events")
            assert not [e for e in on_web2.events if is_final_transcript("assistant")(e)]
        finally:
            cluster.heal_between(victim, "db")
        await on_web2.wait_for(is_final_transcript("user"), 30, "the question, stored after the link healed")
        await on_web2.wait_for(is_final_transcript("assistant"), 30, "the answer, stored after the link healed")
        # The session carried on: it answers again.
        peer.say_wav(str(question))
        await heard_answer(peer, timeout=30)
        await peer.close()
        await _leave(via_web1, on_web2, session)
        seen["received"] = _session_events(on_web2, session)
        seen["errors"] = [e["payload"].get("code") for e in on_web2.events if e["type"] == "voice.error"]
        await via_web1.close()
        await on_web2.close()

    cluster.on_client(scenario)
    assert seen["errors"] == [], seen["errors"]  # never declared lost, nothing failed
    stored = _rows(cluster, f"print(sorted(V.objects.filter(session_id='{seen['session']}')"
                            ".values_list('id', flat=True)))")
    assert stored == str(seen["received"]), f"events stored {stored}, received {seen['received']}"
    assert "held events stored" in bots[seen["victim"]].text()


def test_a_worker_cut_off_from_the_database_for_long_ends_its_sessions_and_claims_nothing(cluster, tmp_path):
    """Scenario 4, a long cut: past its lease (the dead-worker window less two heartbeats) the
    worker hangs up its sessions without a word; the other worker's sweep fails them and the
    user is told; a new join goes to the other worker; back in reach, the worker registers
    again and no job is claimed twice."""
    import time

    from tests.waiting import wait_until

    bots = _bots(cluster)  # the cluster's 4 s dead-worker window
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")
    seen: dict = {}

    async def scenario() -> None:
        on_web2, via_web1, join, peer, victim = await _active_session(cluster)
        session, seen["session"], seen["victim"] = join["sessionId"], join["sessionId"], victim
        seen["survivor"] = "bot1" if victim == "bot2" else "bot2"
        cluster.cut_between(victim, "db")
        try:
            cut_at = time.monotonic()
            await on_web2.wait_for(lambda e: e["type"] == "voice.error" and e.get("sessionId") == session
                                   and e["payload"].get("code") == "worker_lost", 30, "worker_lost on web2")
            seen["detect_s"] = time.monotonic() - cut_at
            # The bot hung up: the user's WebRTC connection ends (it does not go on talking to a
            # session the page says is over).
            await await_until(lambda: peer.pc.connectionState in ("closed", "failed"), 30,
                              "the cut-off worker to hang up")
            seen["hangup_s"] = time.monotonic() - cut_at
            await peer.close()
            # A new join, while the worker is still cut off, goes to the other one.
            asked_at = time.monotonic()
            again, peer, _ = await _join(cluster, via_web1)
            seen["again"] = again["sessionId"]
            await on_web2.wait_for(lambda e: is_status("active")(e) and e.get("sessionId") == again["sessionId"],
                                   30, "the new session active")
            peer.say_wav(str(question))
            await heard_answer(peer, timeout=30)
            seen["replacement_s"] = time.monotonic() - asked_at
            seen["new_worker"] = via_web1.http.get(f"/api/voice/sessions/{again['sessionId']}").json()["botWorkerId"]
        finally:
            cluster.heal_between(victim, "db")
        await peer.close()
        await _leave(via_web1, on_web2, seen["again"])
        await via_web1.close()
        await on_web2.close()

    cluster.on_client(scenario)
    victim, survivor = seen["victim"], seen["survivor"]
    assert seen["new_worker"] == survivor
    wait_until(lambda: _rows(cluster, f"print(W.objects.get(worker_id='{victim}').stopped_at is None)") == "True",
               60, "the cut-off worker to register again")
    log = bots[victim].text()
    assert "ending 1 session(s) without a word" in log
    # It never tried the job it could not keep: no line of its bot code (voicebot.*) names that
    # session. Back in reach, the teardown sweep it runs like any server may end the session once
    # the user has left (voicesessions.*: "inactive -> ended reason=persistence_elapsed"), which
    # is not trying it; which process's sweep gets there first is a race.
    tried = [line for line in log.splitlines() if seen["again"] in line and " voicebot." in line]
    assert not tried, tried
    jobs = _rows(cluster, "from voicesessions.models import BotJob as J; print(sorted((str(j.session_id), j.worker_id, "
                          f"j.attempts) for j in J.objects.filter(session_id__in=['{seen['session']}', "
                          f"'{seen['again']}'])))")
    assert jobs == str(sorted([(seen["session"], victim, 1), (seen["again"], survivor, 1)])), jobs
    print(f"[cluster] worker cut off from db: told in {seen['detect_s']:.1f} s, hung up in {seen['hangup_s']:.1f} s, "
          f"a new join answered in {seen['replacement_s']:.1f} s")


def test_redis_restarted_empty_loses_no_queued_job_and_starts_no_second_bot(cluster):
    """Scenario 5: jobs wait (both workers cut off from db, and so from Redis, which lives there),
    Redis restarts empty, joins keep coming while it is down and after; once the workers are back
    every job is served, once (the BotJob row is the record of truth, the stream only dispatches)."""
    from tests.waiting import wait_until

    bots = _bots(cluster)
    web1, web2 = cluster.web["web1"], cluster.web["web2"]
    users = [f"burst{i}" for i in range(4)]  # the two workers' four slots
    keys = users_with_tokens(lambda *args: cluster.manage("web1", *args), users)

    def join(user: str, server) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(base_url=server.url, timeout=30, trust_env=False,
                                         headers={"Authorization": f"Token {keys[user]}"}) as http:
                await http.post("/api/voice/room", json={"assistant": "pearl"})
                return await http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True})
        return cluster.on_client(call, timeout=60)

    answers = []
    for host in bots:
        cluster.cut_between(host, "db")
    try:
        answers += [join(users[0], web1), join(users[1], web2)]  # queued, their entries in the old Redis
        cluster.stop_redis()
        answers += [join(users[2], web1)]  # Redis down: queued, not published
        cluster.start_redis()
        answers += [join(users[3], web2)]  # published to the new, empty Redis (a stream without the group)
    finally:
        for host in bots:
            cluster.heal_between(host, "db")
    assert [a.status_code for a in answers] == [202] * 4, [(a.status_code, a.text[:200]) for a in answers]
    sessions = [a.json()["sessionId"] for a in answers]
    done = ("from voicesessions.models import BotJob as J; "
            f"print(J.objects.filter(session_id__in={sessions!r}, status='done').count())")
    wait_until(lambda: _rows(cluster, done) == "4", 90, "every queued job to be served")
    jobs = _rows(cluster, "from voicesessions.models import BotJob as J; from django.db.models import Count; "
                          f"print(sorted(J.objects.filter(session_id__in={sessions!r}).values_list('session_id')"
                          ".annotate(n=Count('id')).values_list('n', flat=True)))")
    assert jobs == str([1] * 4), jobs  # one job a session
    logs = "".join(proc.text() for proc in bots.values())
    assert all(logs.count(f"session={s} ready on") == 1 for s in sessions), \
        {s: logs.count(f"session={s} ready on") for s in sessions}  # one bot a room
    for user in users:  # free the slots
        async def leave(user: str = user) -> None:
            async with httpx.AsyncClient(base_url=web1.url, timeout=30, trust_env=False,
                                         headers={"Authorization": f"Token {keys[user]}"}) as http:
                assert (await http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})).status_code == 200
        cluster.on_client(leave, timeout=60)


def test_servers_behind_a_slow_link_to_the_data_stores_still_join_and_deliver_events(cluster, tmp_path):
    """Scenario 6: web2 reaches PostgreSQL and Redis through a userspace proxy that adds 50 ms each
    way (these kernels have no netem; tests/delayproxy.py), web1 reaches them directly. Joins and
    events work through both, a whole spoken turn included; what the slow link costs is measured."""
    import datetime as dt
    import statistics
    import time

    _bots(cluster)
    pg, redis_at = cluster.slow_link(6432, 5432), cluster.slow_link(6380, 6379)
    cluster.stop_host("web2")
    cluster.web["web2"] = cluster.start_web("web2", DATABASE_URL=f"postgres://postgres@{pg}/voice",
                                            REDIS_URL=f"redis://{redis_at}/0")
    question = speak_to_wav(QUESTION, tmp_path / "question.wav")
    figures: dict = {}

    async def scenario() -> None:
        for name in ("web1", "web2"):
            client = Client(cluster.web[name])
            await client.open_ws()
            joins = []
            for _ in range(3):
                client.http.post("/api/voice/room", json={"assistant": "pearl"})
                started = time.monotonic()
                join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True})
                joins.append((time.monotonic() - started) * 1000)
                assert join.status_code == 202, join.text
                session = join.json()["sessionId"]
                await _leave(client, client, session)
            # A whole spoken turn: signalling through the server, the bot's events to its socket.
            join, peer, _ = await _join(cluster, client)
            session = join["sessionId"]
            await client.wait_for(lambda e: is_status("active")(e) and e.get("sessionId") == session, 30,
                                  f"active through {name}")
            peer.say_wav(str(question))
            await client.wait_for(lambda e: is_final_transcript("assistant")(e) and e.get("sessionId") == session,
                                  30, f"the answer through {name}")
            await heard_answer(peer)
            await peer.close()
            await _leave(client, client, session)
            # Delivery: from the row's timestamp (one clock: every host is this machine) to the socket.
            delivery = [(client.received_at[e["id"]] - dt.datetime.fromisoformat(e["timestamp"]).timestamp()) * 1000
                        for e in client.events if e.get("sessionId") == session and e.get("timestamp")]
            figures[name] = (statistics.median(joins), statistics.median(delivery), len(delivery))
            await client.close()

    cluster.on_client(scenario)
    assert " 500 " not in (cluster.workdir / "web2-daphne.log").read_text(errors="replace")
    (direct_join, direct_event, n1), (slow_join, slow_event, n2) = figures["web1"], figures["web2"]
    print(f"[cluster] join p50 {direct_join:.0f} ms direct, {slow_join:.0f} ms with 50 ms each way to db; an event "
          f"from its row to the socket p50 {direct_event:.0f} / {slow_event:.0f} ms ({n1} / {n2} events)")
