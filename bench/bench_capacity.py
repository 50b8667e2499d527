"""Capacity of one bot worker (issue 14): concurrent sessions on one core, and a soak.

Production mode for real on this machine, as bench_prod.py sets it up (a throw-away
PostgreSQL database, Redis db 11, 2 Daphne servers, websockets through the channel
layer), with the hosted models faked by tests/fakes/openai_api.py, which answers at
once: what is measured is the worker, not a model.

The measurement is kept honest by pinning: the worker runs under `taskset -c 0`
(from its start, so its own admission control counts one usable core), and this
process (the WebRTC peers, `voicebot/peer.py`), the two servers and the fake API run
on core 1. PostgreSQL and Redis are the machine's services and run where the kernel
puts them. The worker's admission limit is lifted (VOICE_WORKER_MAX_LOAD=1000) so that
the bench sees what happens past it; in service the worker would stop claiming there.

  1. Rounds (--ns, default 1,5,10,20,40): N users each join, connect a WebRTC peer and
     speak --turns questions (espeak-ng WAV), waiting for each answer. Their starts are
     spread over --spread seconds (default 6: about one turn's cycle, so that their turns
     end at independent moments, as users' do; 0.4 puts them nearly in lockstep, every
     turn's work in one burst), and the figures are read while all N talk. Per round:
     voice-to-voice p50/p95 (the bot's own `latency.totalMs`: VAD stop -> bot started
     speaking, from the voice.bot.speaking events; and the client's speech end -> first
     loud audio frame), the worker's CPU (% of its one core) and CPU seconds per
     session-minute, its RSS peak and its RSS after the bots left. Reported: the first
     N whose p50 exceeds 1.2 x the N=1 figure. A round with timeouts ends the rounds.
     After each round, bare Pipecat (bench/bare_pipecat.py) runs the same N on the same
     core, and the round reports ours / bare for the client p50 and the CPU. An N given
     more than once (--ns 5,5,5,5) repeats it: ours and bare Pipecat's rounds alternate, so
     the machine's drift hits both, and the table adds the median ratios for that N.
  2. Soak (--soak S, default 0): S sessions one after another, --soak-parallel at a
     time, each joining, speaking one question, hearing the answer and leaving; the
     worker's RSS after every --rss-every sessions, once it has reaped them all.

    .venv/bin/python bench/bench_capacity.py [--ns 1,5,10,20,40] [--turns 3]
                                             [--soak 500 --soak-parallel 5 --rss-every 50]

Progress on stdout, a table at the end, JSON in bench/results/capacity-<timestamp>.json.
Every process is stopped and the database dropped at the end, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(ROOT / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from bench_core import (Stagger, _raise_interrupt, cpu_seconds, free_port, memory_kib, percentile,  # noqa: E402
                        settled_rss_mib, wait_until_up, write_results)
from bench_prod import (FAKE_KEY, FAKE_RUNNER, PG, QUESTION, REDIS_DB, VENV_BIN, Fleet, Inbox,  # noqa: E402
                        create_users, find_fake_class, hosted_round, http_client, is_speaking, log, manage,
                        open_sockets, prod_env, request, scan_logs, setup_django)

WORKER_CORE, CLIENT_CORE = 0, 1


def pin(pid: int, core: int) -> None:
    """Every thread of `pid` onto `core` (threads it starts later inherit it).

    `taskset -a` walks the process's threads and fails when one ends during the walk (seen once
    in a run of the media-path A/B, 2026-12-07): tried again, a few times, before giving up.
    """
    for attempt in range(5):
        done = subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True)
        if done.returncode == 0 or attempt == 4:
            done.check_returncode()
            return


def p95(values: list[float]) -> float:
    return round(percentile(values, 95), 1) if values else float("nan")


def p50(values: list[float]) -> float:
    return round(percentile(values, 50), 1) if values else float("nan")


def start_stack(fleet: Fleet, env: dict[str, str], pool: int) -> tuple[list[str], str, Any]:
    """Servers A and B and the fake API on the client core; the hosted-model worker on its own core."""
    a, b = fleet.start_server("A"), fleet.start_server("B")
    for server in (a, b):
        wait_until_up(server.popen, server.url, 60)
        pin(server.pid, CLIENT_CORE)
    class_name = find_fake_class()
    if class_name is None:
        raise RuntimeError("no fake OpenAI API server class in tests/fakes/openai_api.py")
    fake = fleet.start_other("fake-openai", [str(VENV_BIN / "python"), "-c", FAKE_RUNNER, str(ROOT), class_name,
                                             FAKE_KEY, QUESTION])
    fleet.wait_for_log(fake, "FAKE_URL", 30)
    pin(fake.pid, CLIENT_CORE)
    _, fake_url, _, fake_key = next(ln for ln in fake.log_path.read_text().splitlines()
                                    if ln.startswith("FAKE_URL")).split()
    base_url = fake_url.rstrip("/") + ("" if fake_url.rstrip("/").endswith("/v1") else "/v1")
    worker_env = {**env, "VOICE_WORKER_MAX_LOAD": "1000"}
    for stage in ("STT", "LLM", "TTS"):
        worker_env.update({f"VOICE_{stage}": "openai", f"VOICE_{stage}_BASE_URL": base_url,
                           f"VOICE_{stage}_API_KEY": fake_key})
    worker = fleet.start_other("worker", ["taskset", "-c", str(WORKER_CORE), str(VENV_BIN / "python"), "manage.py",
                                          "runbotworker", "--worker-id", "capacity", "--pool-size", str(pool)],
                               env=worker_env)
    fleet.wait_for_log(worker, "listening on", 120)
    worker_url = re.search(r"listening on (http://\S+)", worker.log_path.read_text()).group(1)  # type: ignore[union-attr]
    return [a.url, b.url], worker_url, worker, (base_url, fake_key)


def start_bare(fleet: Fleet, base_url: str, key: str) -> str:
    """bench/bare_pipecat.py on the worker's core (the worker is idle while it is measured)."""
    port = free_port()
    bare = fleet.start_other("bare", ["taskset", "-c", str(WORKER_CORE), str(VENV_BIN / "python"),
                                      str(ROOT / "bench" / "bare_pipecat.py"), "--port", str(port),
                                      "--base-url", base_url, "--api-key", key])
    fleet.wait_for_log(bare, "listening on", 60)
    return f"http://127.0.0.1:{port}"


async def bare_round(url: str, n: int, wav: str, turns: int, pid: int, spread: float) -> dict[str, Any]:
    """N peers on the bare pipeline, each asking `turns` questions, their starts spread as the
    worker's round spreads them; the client's speech end -> first audio while all of them talk."""
    from voicebot.peer import BotPeer

    peers = [BotPeer(url, "bare") for _ in range(n)]
    client_ms: list[float] = []
    timeouts = 0
    try:
        await asyncio.gather(*(p.connect() for p in peers))
        await asyncio.sleep(1.0)
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        stagger = Stagger(n, spread, pid)

        async def converse(i: int, peer: Any) -> None:
            nonlocal timeouts
            await stagger.start(i)
            for _ in range(turns):
                peer.say_wav(wav)
                deadline = time.monotonic() + 45
                while peer.heard.first_loud_at is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                if peer.heard.first_loud_at is None:
                    timeouts += 1
                    continue
                ended = peer.mic.speech_ended_at
                if ended and peer.heard.first_loud_at > ended and stagger.within(time.monotonic()):
                    client_ms.append((peer.heard.first_loud_at - ended) * 1000)
                # The answer is over once no loud frame has come for 0.6 s (bounded by 60 s).
                last, still = peer.heard.loud_frames, time.monotonic()
                while time.monotonic() - still < 0.6 and time.monotonic() < deadline + 60:
                    await asyncio.sleep(0.05)
                    if peer.heard.loud_frames != last:
                        last, still = peer.heard.loud_frames, time.monotonic()
                await asyncio.sleep(0.3)
            stagger.finish()

        await asyncio.gather(*(converse(i, p) for i, p in enumerate(peers)))
        wall = time.monotonic() - wall_before
        cpu_pct = stagger.cpu_pct() or round(100 * (cpu_seconds(pid) - cpu_before) / wall, 1)
        rss = round(memory_kib(pid)["VmRSS"] / 1024, 1)
    finally:
        for peer in peers:
            await peer.close()
    return {"n": n, "turns": len(client_ms), "timeouts": timeouts, "client_p50_ms": p50(client_ms),
            "client_p95_ms": p95(client_ms), "cpu_pct": cpu_pct, "rss_mib": rss,
            "raw_client_ms": [round(v, 1) for v in client_ms]}


def rounds(args: argparse.Namespace, servers: list[str], worker_url: str, fleet: Fleet, worker: Any,
           tokens: list[str], wav: str, bare_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": [], "worker_idle_rss_mib": round(memory_kib(worker.pid)["VmRSS"] / 1024, 1)}
    cpu_before, wall_before = cpu_seconds(worker.pid), time.monotonic()
    time.sleep(5)  # what the worker costs with no session: heartbeats, the job queue's polling
    out["worker_idle_cpu_pct"] = round(100 * (cpu_seconds(worker.pid) - cpu_before) / (time.monotonic() - wall_before), 1)
    log(f"   idle worker: {out['worker_idle_cpu_pct']}% of its core, RSS {out['worker_idle_rss_mib']} MiB")
    used, base, base_n = 0, None, 0
    for n in args.ns:
        log(f"1. N={n}: {n} sessions on the worker's one core, {args.turns} turns each")
        cpu_before, wall_before = cpu_seconds(worker.pid), time.monotonic()
        r = asyncio.run(hosted_round(servers, tokens[used:used + n], wav, args.turns, worker_url, fleet, worker,
                                     spread=args.spread, steady_only=True))
        used += n
        # The CPU while every session talked, not diluted by the staggered starts and ends.
        r["worker_cpu_pct_round"] = r["worker_cpu_pct"]
        r["worker_cpu_pct"] = r["worker_cpu_pct_all_talking"] or r["worker_cpu_pct"]
        r["bot_total_p50_ms"], r["bot_total_p95_ms"] = p50(r["raw_total_ms"]), p95(r["raw_total_ms"])
        r["client_p50_ms"], r["client_p95_ms"] = p50(r["raw_client_ms"]), p95(r["raw_client_ms"])
        session_minutes = n * r["talk_s"] / 60
        r["worker_cpu_s_per_session_minute"] = round((cpu_seconds(worker.pid) - cpu_before) / session_minutes, 2) \
            if session_minutes else None
        r["round_wall_s"] = round(time.monotonic() - wall_before, 1)
        out["rounds"].append(r)
        log(f"   N={n}: bot p50 {r['bot_total_p50_ms']} / p95 {r['bot_total_p95_ms']} ms; client p50 "
            f"{r['client_p50_ms']} / p95 {r['client_p95_ms']} ms; {r['turns']} turns, {r['timeouts']} timeouts; "
            f"worker CPU {r['worker_cpu_pct']}% of its core, RSS peak {r['worker_rss_mib_peak']} MiB, "
            f"after the bots left {r['worker_rss_mib_after_reap']} MiB; stages p50 {r['stage_p50_ms']}")
        if bare_url:
            bare = fleet.procs["bare"]
            b = r["bare"] = asyncio.run(bare_round(bare_url, n, wav, args.turns, bare.pid, args.spread))
            r["client_p50_vs_bare"] = round(r["client_p50_ms"] / b["client_p50_ms"], 3) if b["client_p50_ms"] else None
            r["cpu_vs_bare"] = round(r["worker_cpu_pct"] / b["cpu_pct"], 3) if b.get("cpu_pct") else None
            log(f"   N={n} bare Pipecat: client p50 {b['client_p50_ms']} / p95 {b['client_p95_ms']} ms over "
                f"{b['turns']} turns ({b['timeouts']} timeouts), its CPU {b['cpu_pct']}%, RSS {b['rss_mib']} MiB; "
                f"ours / bare p50 = {r['client_p50_vs_bare']}, CPU = {r['cpu_vs_bare']}")
        if base is None:
            base, base_n = r["bot_total_p50_ms"], n
        elif "knee_n" not in out and n > base_n and r["bot_total_p50_ms"] > 1.2 * base:  # not a repeat of base_n
            out["knee_n"] = n
        if r["timeouts"]:
            log(f"   stopping: {r['timeouts']} turns got no answer in time at N={n}")
            out["stopped"] = f"timeouts at N={n}"
            break
    return out


async def one_session(server: str, token: str, wav: str, latencies: list[float]) -> None:
    """Join, connect, ask one question, hear the answer to its end, leave."""
    from voicebot.peer import BotPeer

    async with http_client(server, 1) as http:
        inbox = Inbox((await open_sockets(server, [token]))[0])
        peer = None
        try:
            status, _, room = await request(http, "POST", "/api/voice/room", token, {"assistant": "pearl"})
            if status != 200:
                raise RuntimeError(f"room {status} {room}")
            for _ in range(5):  # a 503 no_capacity: come back later, as a user would
                status, _, join = await request(http, "POST", "/api/bot/join", token,
                                                {"voiceOnly": True, "assistant": "pearl", "sessionPersistence": 0})
                if status != 503:
                    break
                await asyncio.sleep(1.0)
            if status not in (200, 202):
                raise RuntimeError(f"join {status} {join}")
            peer = BotPeer(server, room["token"])
            await peer.connect()
            pos, _ = await inbox.wait_for(0, lambda e: e.get("type") == "voice.session.status"
                                          and (e.get("payload") or {}).get("status") == "active", 30)
            peer.say_wav(wav)
            pos, event = await inbox.wait_for(pos, lambda e: is_speaking(True)(e) and (
                (e["payload"].get("latency") or {}).get("totalMs") is not None), 45)
            latencies.append(float(event["payload"]["latency"]["totalMs"]))
            await inbox.wait_for(pos, is_speaking(False), 60)
        finally:
            if peer is not None:
                await peer.close()
            await request(http, "DELETE", "/api/voice/room", token, {"teardownDelay": 0})
            await inbox.close()


def wait_reaped(worker_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not httpx.get(f"{worker_url}/health", timeout=2, trust_env=False).json().get("activeSessions"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the worker did not reap its sessions in time")


def soak(args: argparse.Namespace, servers: list[str], worker_url: str, worker: Any, tokens: list[str],
         wav: str) -> dict[str, Any]:
    log(f"2. soak: {args.soak} sessions, {args.soak_parallel} at a time; RSS every {args.rss_every}")
    samples: list[dict[str, Any]] = []
    latencies: list[float] = []
    failures: list[str] = []
    done = 0
    started = time.monotonic()
    while done < args.soak:
        batch = min(args.soak_parallel, args.soak - done)

        async def run_batch(first: int) -> list[Any]:
            return await asyncio.gather(*(one_session(servers[(first + k) % 2], tokens[first + k], wav, latencies)
                                          for k in range(batch)), return_exceptions=True)

        for result in asyncio.run(run_batch(done)):
            if isinstance(result, BaseException):
                failures.append(f"{type(result).__name__}: {result}"[:200])
        done += batch
        wait_reaped(worker_url)  # one batch after another: the next never waits for a slot
        if done % args.rss_every == 0 or done == args.soak:
            rss = settled_rss_mib(worker.pid)
            samples.append({"sessions": done, "rss_mib": rss, "elapsed_s": round(time.monotonic() - started, 1)})
            log(f"   {done} sessions: worker RSS {rss} MiB ({len(failures)} failed so far)")
    after_first = [s["rss_mib"] for s in samples if s["sessions"] >= args.rss_every]
    growth = (round(100 * (after_first[-1] - after_first[0]) / after_first[0], 2)
              if len(after_first) > 1 else None)
    return {"sessions": args.soak, "parallel": args.soak_parallel, "rss_samples": samples,
            "rss_growth_after_first_sample_pct": growth, "failures": len(failures), "failure_samples": failures[:5],
            "bot_total_p50_ms": p50(latencies), "bot_total_p95_ms": p95(latencies)}


def ratios_by_n(rounds: list[dict[str, Any]]) -> dict[int, list[tuple[float, float]]]:
    """(client p50, CPU) of ours over bare Pipecat's, for each round measured against it, by N."""
    found: dict[int, list[tuple[float, float]]] = {}
    for r in rounds:
        if r.get("client_p50_vs_bare") and r.get("cpu_vs_bare"):
            found.setdefault(r["n"], []).append((r["client_p50_vs_bare"], r["cpu_vs_bare"]))
    return found


def table(results: dict[str, Any]) -> str:
    lines = ["", "N   turns  bot p50/p95 ms      client p50/p95 ms   worker CPU %  CPU s/session-min  "
             "RSS peak / after MiB   bare Pipecat client p50/p95, CPU %   ours/bare p50, CPU"]
    for r in results.get("capacity", {}).get("rounds", []):
        b = r.get("bare") or {}
        lines.append(f"{r['n']:<3} {r['turns']:>5}  {r['bot_total_p50_ms']:>8} / {r['bot_total_p95_ms']:<8}  "
                     f"{r['client_p50_ms']:>8} / {r['client_p95_ms']:<8}  {r['worker_cpu_pct']:>12}  "
                     f"{r['worker_cpu_s_per_session_minute']!s:>17}  {r['worker_rss_mib_peak']} / "
                     f"{r['worker_rss_mib_after_reap']:<10}  {b.get('client_p50_ms', '-')} / {b.get('client_p95_ms', '-')}, "
                     f"{b.get('cpu_pct', '-')}   {r.get('client_p50_vs_bare', '-')}, {r.get('cpu_vs_bare', '-')}")
    cap = results.get("capacity", {})
    for n, pairs in sorted(ratios_by_n(cap.get("rounds", [])).items()):
        if len(pairs) > 1:  # --ns 5,5,5: rounds of ours and bare Pipecat's alternate, so drift hits both
            lines.append(f"N={n} over {len(pairs)} alternating rounds: median ours / bare p50 "
                         f"{statistics.median(p for p, _ in pairs):.3f}, CPU {statistics.median(c for _, c in pairs):.3f}")
    if cap:
        lines.append(f"worker idle: RSS {cap.get('worker_idle_rss_mib')} MiB, CPU {cap.get('worker_idle_cpu_pct')}%; "
                     "first N with p50 > 1.2 x N=1: "
                     f"{cap.get('knee_n', 'none of these')}")
    s = results.get("soak")
    if s:
        lines.append(f"soak: {s['sessions']} sessions ({s['parallel']} at a time), {s['failures']} failed; RSS "
                     + ", ".join(f"{x['sessions']}: {x['rss_mib']}" for x in s["rss_samples"])
                     + f" MiB; growth after the first sample {s['rss_growth_after_first_sample_pct']}%; "
                     f"bot p50/p95 {s['bot_total_p50_ms']}/{s['bot_total_p95_ms']} ms")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 5, 10, 20, 40])
    parser.add_argument("--turns", type=int, default=3, help="questions per session in each round")
    parser.add_argument("--spread", type=float, default=6.0,
                        help="seconds over which a round's sessions start (default: about one turn's cycle, so "
                             "their turns end at independent moments as users' do; 0.4: nearly in lockstep)")
    parser.add_argument("--soak", type=int, default=0, help="sessions in the soak (0: no soak)")
    parser.add_argument("--soak-parallel", type=int, default=5)
    parser.add_argument("--rss-every", type=int, default=50)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Pipecat rounds")
    parser.add_argument("--keep-tmp", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
        print("needs two usable cores and taskset (util-linux)")
        return 2
    os.sched_setaffinity(0, {CLIENT_CORE})  # the peers never share the worker's core
    signal.signal(signal.SIGTERM, _raise_interrupt)
    var_dir = Path(tempfile.mkdtemp(prefix="voice-bench-capacity-"))
    db_name = f"voice_bench_{uuid.uuid4().hex[:8]}"
    env = prod_env(var_dir, db_name)
    # The production default, not the tests' 4 s: a worker on one core that is slow to
    # heartbeat under load is measured, not declared dead mid-round.
    env["VOICE_WORKER_DEAD_AFTER"] = "10"
    results: dict[str, Any] = {"started": dt.datetime.now().isoformat(timespec="seconds"), "args": vars(args),
                               "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                                           "loadavg_start": os.getloadavg()},
                               "pinning": {"worker": WORKER_CORE, "peers, servers, fake API": CLIENT_CORE}}
    fleet = Fleet(var_dir, env)
    db_created = False
    try:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        db_created = True
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        log(f"database {db_name}; migrate + seed_demo")
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        setup_django(env)
        tokens = create_users("cap", sum(args.ns) + args.soak)
        from tests.botharness import speak_to_wav

        wav = str(speak_to_wav(QUESTION, var_dir / "question.wav"))
        # Twice the soak's batch: the server admits by the worker's last heartbeat, which may still
        # count the batch before as live.
        servers, worker_url, worker, (fake_url, fake_key) = start_stack(fleet, env,
                                                                         max([*args.ns, 2 * args.soak_parallel]))
        log(f"servers {servers}, worker {worker_url} on core {WORKER_CORE}")
        bare_url = None if args.no_bare else start_bare(fleet, fake_url, fake_key)
        results["capacity"] = rounds(args, servers, worker_url, fleet, worker, tokens, wav, bare_url)
        if args.soak:
            results["soak"] = soak(args, servers, worker_url, worker, tokens[sum(args.ns):], wav)
    except KeyboardInterrupt:
        results["failure"] = "interrupted"
    except Exception as exc:  # noqa: BLE001 - keep what was measured, then fail
        import traceback

        traceback.print_exc()
        results["failure"] = f"{type(exc).__name__}: {exc}"
    finally:
        fleet.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up
            pass
        results["logs"] = scan_logs(fleet)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        if db_created:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if args.keep_tmp:
            log(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
        results["machine"]["loadavg_end"] = os.getloadavg()
    path = write_results(results, "capacity")
    print(table(results))
    for name, scan in results["logs"].items():
        print(f"log {name}: {scan['error_lines']} error lines; {scan['known']}")
        for line in scan["error_samples"][:3]:
            print("    " + line[:200])
    print(f"results: {path}")
    if "failure" in results:
        print(f"FAILED: {results['failure']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
