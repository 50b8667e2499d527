"""What llama.cpp's sampling guards cost a turn's first token (issue 12).

The bot's local LLM reads the user's words while they speak (voicebot/prefill.py), so a
turn's request finds most or all of its prompt in llama.cpp's cache, and what is left of
its first token is the sampler's own set-up. This starts the bot's llama.cpp server
(`voicebot.services.llm.start_local_server`, the packaged default model), holds a short
conversation, and for each turn first reads the whole prompt ahead (as a read that heard
the final words does), then times the turn's first streamed token, for each variant:

  bot     voicebot.services.llm.LOCAL_SAMPLING as it is
  dry4    the same with llama.cpp's default four DRY sequence breakers ("\\n", ":", '"', "*")
  no-dry  the same without DRY

    .venv/bin/python bench/bench_llm_sampling.py [--rounds 2]

Prints each variant's time to first token, p50 and p99 over the turns, and the decode rate.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = ["How many continents are there?", "Who painted the Mona Lisa?", "What is 10 times 12?",
             "Which planet is closest to the Sun?", "How many legs does an insect have?",
             "What language do people speak in Mexico?", "Can you give me a tip for staying focused at work?",
             "How do I make a good cup of tea?"]
SYSTEM = ("Your name is Pearl. You are a helpful voice assistant. Your words are spoken aloud, so answer in one "
          "or two short, plain sentences without lists or markdown.")


def stream(base: str, messages: list[dict[str, str]], extra: dict[str, Any], max_tokens: int) -> tuple[float, str, dict]:
    """(seconds to the first content token, the text, llama.cpp's timings) of one streamed request."""
    import httpx

    body = {"model": "local", "messages": messages, "max_tokens": max_tokens, "stream": True, "temperature": 0.2,
            **extra}
    started, first, text, timings = time.perf_counter(), None, "", {}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=120, trust_env=False) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content")
            if delta:
                first = first if first is not None else time.perf_counter() - started
                text += delta
            timings = chunk.get("timings") or timings
    return (first if first is not None else float("nan")), text, timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each variant holds the conversation")
    args = parser.parse_args(argv)
    from voicebot.services.llm import LOCAL_SAMPLING, start_local_server

    variants = {"bot": dict(LOCAL_SAMPLING),
                "dry4": {**LOCAL_SAMPLING, "dry_sequence_breakers": ["\n", ":", "\"", "*"]},
                "no-dry": {**LOCAL_SAMPLING, "dry_multiplier": 0.0}}
    server, base = start_local_server()
    print(f"llama.cpp server at {base}; {len(QUESTIONS)} turns x {args.rounds} rounds a variant, alternating",
          flush=True)
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, extra in variants.items():  # alternating, so the machine's drift hits every variant
            history = [{"role": "system", "content": SYSTEM}]
            for question in QUESTIONS:
                history.append({"role": "user", "content": question})
                stream(base, history, extra, 1)  # the words read ahead, final included
                first, text, timings = stream(base, history, extra, 60)
                firsts[name].append(first * 1000)
                if timings.get("predicted_per_second"):
                    rates[name].append(float(timings["predicted_per_second"]))
                history.append({"role": "assistant", "content": text})
    print("\n| sampling | turns | first token p50 / p99 ms | decode tokens/s |\n|---|---|---|---|")
    for name, values in firsts.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        rate = statistics.median(rates[name]) if rates[name] else float("nan")
        print(f"| {name} | {len(values)} | {statistics.median(values):.0f} / {p99:.0f} | {rate:.1f} |")
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
