"""What a failing hosted model costs the user: one clear error, or a dead session?

A real server and `manage.py runbotworker` (tests/livesrv.py, tests/botharness.py) with
all three stages hosted on the fake OpenAI API (tests/fakes/openai_api.py; no local
model loads). One user talks to the bot by typed messages over the websocket (the
same turns a transcript makes, without the audio path's CPU), and the fake is made to
fail the way providers do:

  ok        a normal turn: message -> the assistant's final transcript
  429       throttled, with Retry-After: 20
  500       a server error
  hang      no answer (the worker's VOICE_HOSTED_TIMEOUT, 2 s here, must give up)
  cut-call  a tool call cut by the token limit (the fake at VOICE_LLM_TOOL_TOKENS=20)

For each failure: the time from the message to the `voice.error` the user is shown,
whether its code is the expected one, and whether the *next* turn is answered (the
session survived), with that answer's latency. --rounds rounds of all five; then
one refused key (401) must end the session as `unavailable` with a fatal error.
The worker's RSS is read before and after. Figures go to stdout (and as JSON with
--json).

With --tts cartesia the speech comes from a streaming provider (the fake Cartesia
websocket, tests/fakes/cartesia_api.py), and two more cases fail it:

  tts-error  Cartesia answers the sentence with an error message
  tts-hang   Cartesia never answers the sentence (no audio, no done)

    .venv/bin/python bench/bench_provider_failures.py [--rounds 10] [--tts openai|cartesia] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.botharness import BOT_ENV, active_session, is_final_transcript, is_status, start_worker, stop_worker  # noqa: E402
from tests.fakes.openai_api import FakeOpenAI  # noqa: E402
from tests.livesrv import start_server  # noqa: E402

KEY = "sk-bench-failures-0000"
EXPECTED = {"429": "llm_rate_limited", "500": "llm_provider_error", "hang": "llm_unreachable",
            "cut-call": "llm_tool_call_cut"}
TTS_EXPECTED = {"tts-error": "tts_failed", "tts-hang": "tts_failed"}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def is_speaking_done(event: dict[str, Any]) -> bool:
    return event["type"] == "voice.bot.speaking" and not event["payload"].get("speaking")


async def turn(client: Any, text: str, timeout: float = 30, *, silent: bool = False
               ) -> tuple[str, float, dict[str, Any]]:
    """Send one typed turn as a user would (again when told the bot is still answering), and wait
    until the bot is quiet; ("answer" | "error" | "nothing", seconds to what the user saw, its event).
    `silent`: the answer's speech is expected to fail, so its transcript is not the outcome, the error is."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        seen = len(client.events)
        await client.ws.send(json.dumps({"type": "user-message", "content": text}))
        outcome: tuple[str, float, dict[str, Any]] | None = None
        while outcome is None and time.monotonic() < deadline:
            for event in client.events[seen:]:
                if event["type"] == "voice.error":
                    outcome = ("error", time.monotonic() - start, event)
                    break
                if is_final_transcript("assistant")(event) and not silent:
                    outcome = ("answer", time.monotonic() - start, event)
                    break
            await asyncio.sleep(0.02)
        if outcome is None:
            break
        if outcome[0] == "error" and outcome[2]["payload"].get("code") in ("bot_busy", "rate_limited"):
            await asyncio.sleep(0.5)  # the page says: send it again when the bot has answered
            continue
        if outcome[0] == "answer":  # the user hears the answer out before speaking again
            await client.wait_for(lambda e: is_speaking_done(e) and client.events.index(e) >= seen, 20,
                                  "the bot finished speaking")
        return outcome
    return "nothing", time.monotonic() - start, {}


async def scenario(server: Any, fake: FakeOpenAI, rounds: int, speech: Any = None) -> dict[str, Any]:
    client, peer, _session = await active_session(server, persistence=5, expect_new=True)
    cases = ("ok", *EXPECTED, *(TTS_EXPECTED if speech is not None else ()))
    results: dict[str, dict[str, list]] = {name: {"seconds": [], "codes": [], "next": [], "next_seconds": []}
                                           for name in cases}
    long_note = {"title": "plan", "body": "A note far longer than twenty tokens, so that the fake model's "
                 "tool call is cut by the limit before its JSON arguments are complete."}
    for n in range(rounds):
        for name in results:
            if name == "429":
                fake.fail_next(1, 429)
            elif name == "500":
                fake.fail_next(1, 500)
            elif name == "hang":
                fake.hang_next(1, 60)
            elif name == "cut-call":
                fake.call_tool_next("create_note", long_note)
            elif name == "tts-error":
                speech.fail_next(1)
            elif name == "tts-hang":
                speech.hang_next(2)  # the sentence and the context's close
            kind, seconds, event = await turn(client, f"Question {n} for the {name} case.",
                                              silent=name in TTS_EXPECTED)
            bucket = results[name]
            bucket["seconds"].append(seconds)
            bucket["codes"].append(event.get("payload", {}).get("code") if kind == "error" else kind)
            kind2, seconds2, _ = await turn(client, f"And a normal question after {name}, round {n}.")
            bucket["next"].append(kind2 == "answer")
            bucket["next_seconds"].append(seconds2)
        print(f"[bench] round {n + 1}/{rounds} done", flush=True)

    fake.api_key = "sk-rotated-9999"  # the key is refused from now on: the session must end cleanly
    kind, seconds, event = await turn(client, "One more question.")
    ended = True
    try:
        await client.wait_for(is_status("unavailable"), 20, "session ended as unavailable")
    except AssertionError:
        ended = False
    refusal = {"seconds": seconds, "code": event.get("payload", {}).get("code"),
               "fatal": event.get("payload", {}).get("fatal"), "session_unavailable": ended}
    await peer.close()
    await client.close()
    return {"turns": results, "refused_key": refusal}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, bucket in results["turns"].items():
        expected = {**EXPECTED, **TTS_EXPECTED}.get(name, "answer")
        out[name] = {
            "n": len(bucket["seconds"]),
            "as_expected": sum(code == expected for code in bucket["codes"]),
            "seen": sorted(set(map(str, bucket["codes"]))),
            "p50_s": round(pct(bucket["seconds"], 50), 3), "p99_s": round(pct(bucket["seconds"], 99), 3),
            "next_answered": sum(bucket["next"]),
            "next_p50_s": round(pct(bucket["next_seconds"], 50), 3),
        }
    out["refused_key"] = results["refused_key"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tts", choices=("openai", "cartesia"), default="openai")
    args = parser.parse_args(argv)
    from contextlib import nullcontext

    from tests.fakes.cartesia_api import VOICE, FakeCartesia

    # The LLM on a fake of its own: failures injected there reach only the LLM. Short fake speech.
    with FakeOpenAI(api_key=KEY) as fake, FakeOpenAI(api_key=KEY, max_speech_seconds=0.5) as media, \
            (FakeCartesia(api_key=KEY) if args.tts == "cartesia" else nullcontext()) as speech, \
            tempfile.TemporaryDirectory(prefix="bench-failures-") as var:
        env = {**BOT_ENV, "VOICE_STT": "openai", "VOICE_LLM": "openai", "VOICE_TTS": "openai",
               "VOICE_STT_BASE_URL": media.url, "VOICE_LLM_BASE_URL": fake.url, "VOICE_TTS_BASE_URL": media.url,
               "VOICE_STT_API_KEY": KEY, "VOICE_LLM_API_KEY": KEY, "VOICE_TTS_API_KEY": KEY,
               "VOICE_STT_MODEL": "gpt-4o-transcribe", "VOICE_LLM_MODEL": "gpt-4.1-mini",
               "VOICE_TTS_MODEL": "gpt-4o-mini-tts", "VOICE_TTS_VOICE": "alloy",
               "VOICE_HOSTED_TIMEOUT": "2", "VOICE_LLM_TOOL_TOKENS": "20", "VOICE_LLM_REPLY_TOKENS": "20"}
        if speech is not None:
            env.update({"VOICE_TTS": "cartesia", "VOICE_TTS_BASE_URL": speech.url, "VOICE_TTS_MODEL": "sonic-3.6",
                        "VOICE_TTS_VOICE": VOICE})
        print("[bench] starting the server and a hosted-only worker", flush=True)
        server = start_server(Path(var), env)
        worker = start_worker(server, "--pool-size", "1")
        try:
            before = rss_mb(worker.pid)
            started = time.monotonic()
            results = asyncio.run(scenario(server, fake, args.rounds, speech))
            took = time.monotonic() - started
            after = rss_mb(worker.pid)
        finally:
            stop_worker(worker)
            server.stop()

    summary = summarise(results)
    print(f"\n{'case':<10} {'n':>3} {'as expected':>12} {'p50 s':>7} {'p99 s':>7} {'next answered':>14} "
          f"{'next p50 s':>11}  seen")
    for name, row in summary.items():
        if name == "refused_key":
            continue
        print(f"{name:<10} {row['n']:>3} {row['as_expected']:>12} {row['p50_s']:>7} {row['p99_s']:>7} "
              f"{row['next_answered']:>14} {row['next_p50_s']:>11}  {', '.join(row['seen'])}")
    refusal = summary["refused_key"]
    print(f"\nrefused key: {refusal['code']} fatal={refusal['fatal']} after {refusal['seconds']:.3f} s; "
          f"session unavailable: {refusal['session_unavailable']}")
    turns = sum(row["n"] for name, row in summary.items() if name != "refused_key") * 2 + 1
    print(f"{turns} turns in {took:.1f} s ({turns / took:.1f} turns/s); worker RSS {before:.0f} -> {after:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "seconds": took, "rss_mb": [before, after]}, indent=2))
    dead = any(row["next_answered"] < row["n"] for name, row in summary.items() if name != "refused_key")
    return 1 if dead or not refusal["session_unavailable"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
