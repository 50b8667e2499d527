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
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(ROOT / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_core import percentile  # noqa: E402
from bench_llm_models import stream_chat, system_prompt  # noqa: E402

QUESTIONS = ["How many continents are there?", "Who painted the Mona Lisa?", "What is 10 times 12?",
             "Which planet is closest to the Sun?", "How many legs does an insect have?",
             "What language do people speak in Mexico?", "Can you give me a tip for staying focused at work?",
             "How do I make a good cup of tea?"]


def main(argv: list[str] | None = None) -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each variant holds the conversation")
    args = parser.parse_args(argv)
    from voicebot.services.llm import LOCAL_SAMPLING, start_local_server

    variants = {"bot": {**LOCAL_SAMPLING, "temperature": 0.2},
                "dry4": {**LOCAL_SAMPLING, "temperature": 0.2, "dry_sequence_breakers": ["\n", ":", "\"", "*"]},
                "no-dry": {**LOCAL_SAMPLING, "temperature": 0.2, "dry_multiplier": 0.0}}
    server, base = start_local_server()
    print(f"llama.cpp server at {base}; {len(QUESTIONS)} turns x {args.rounds} rounds a variant, alternating",
          flush=True)
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with httpx.Client(timeout=120, trust_env=False) as client:
        for seed in range(args.rounds):
            for name, extra in variants.items():  # alternating, so the machine's drift hits every variant
                history = [{"role": "system", "content": system_prompt()}]
                for question in QUESTIONS:
                    history.append({"role": "user", "content": question})
                    stream_chat(client, base, history, seed, max_tokens=1, **extra)  # read ahead, final words included
                    reply = stream_chat(client, base, history, seed, max_tokens=60, **extra)
                    if "error" in reply:
                        print(f"{name}: {reply['error']}")
                        return 1
                    firsts[name].append(reply["ttft_s"] * 1000)
                    if reply["timings"].get("predicted_per_second"):
                        rates[name].append(float(reply["timings"]["predicted_per_second"]))
                    history.append({"role": "assistant", "content": reply["text"]})
    print("\n| sampling | turns | first token p50 / p99 ms | decode tokens/s |\n|---|---|---|---|")
    for name, values in firsts.items():
        rate = statistics.median(rates[name]) if rates[name] else float("nan")
        print(f"| {name} | {len(values)} | {percentile(values, 50):.0f} / {percentile(values, 99):.0f} | {rate:.1f} |")
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
