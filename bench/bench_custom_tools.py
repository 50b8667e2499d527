"""How well spoken requests reach an assistant's custom tools on the offline model.

Scores voicebot/services/tool_router.py (the embedding gate, then one constrained check by
the local llama.cpp model per tool past it) on bench/custom_tool_requests.json: four tools
a company might define (an order's status, an appointment, the weather, a human agent),
120 requests phrased many ways and 113 sentences that must not call a tool, 72 of them on
the tools' own topics. A helper wrote it blind (without seeing the router).

    .venv/bin/python bench/bench_custom_tools.py [--set bench/custom_tool_dev.json] [--misses] [--hosted-form]

With --hosted-form the checks go to the same llama.cpp server as a hosted model's in router
mode would (an OpenAI-compatible server: a strict JSON schema as `response_format`, the answer
not started for the model, no grammar), so the two forms of the check compare on one model.

A request is recalled when its tool is called, or, for a request that leaves a required
argument out, when the assistant asks for that argument; its arguments are right when each
expected one matches (digits for numbers and times, words for the rest). A false call is
any call, or any question for an argument, on a sentence that is not a request. The time
is the router's per sentence: what the user waits for before the turn goes on.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")

SET = ROOT / "bench" / "custom_tool_requests.json"
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)\b")


def same_value(expected: Any, got: Any) -> bool:
    """Loosely equal: numbers and times by their digits, words by their lower-case words."""
    e, g = str(expected).lower(), str(got).lower()
    digits_e, digits_g = re.sub(r"\D", "", e), re.sub(r"\D", "", g)
    if digits_e:
        return digits_e == digits_g.rstrip("0") or digits_e == digits_g or digits_e + "00" == digits_g
    words = lambda s: re.findall(r"[a-z]+", _ORDINAL.sub(r"\1", s))  # noqa: E731
    return words(e) == words(g)


def arguments_right(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(name in got and same_value(value, got[name]) for name, value in expected.items())


async def run(items: list[dict[str, Any]], tools: list[dict[str, Any]], misses: bool,
              hosted_form: bool = False) -> dict[str, Any]:
    import django

    django.setup()
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

    from bench_core import percentile
    from voicebot.services.llm import VoiceLLMService, start_local_server
    from voicebot.services.tool_router import CustomToolRouter

    schemas = [FunctionSchema(name=t["name"], description=t["description"],
                              properties=t["parameters"].get("properties", {}),
                              required=t["parameters"].get("required", [])) for t in tools]
    router = CustomToolRouter(schemas)
    _server, base = start_local_server()  # kept referenced: the server lives as long as it does
    per_tool: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    right: Counter[str] = Counter()
    false_calls: list[tuple[str, str]] = []
    missed: list[tuple[str, str, str]] = []
    gated = {"requests": 0, "others": 0}
    times: list[float] = []
    chat_times: list[float] = []  # the same, for the sentences that are not requests
    asked: list[tuple[float, bool, bool, str]] = []  # (P(request), missing, right tool, text) of each call
    # The bot's own service against the same kind of server: the check is the request a session makes.
    llm = VoiceLLMService(base_url=base, api_key="", model="local", system_prompt="", notes_router=True,
                          local=not hosted_form)
    ask = llm._check_tool
    for number, item in enumerate(items, 1):
        router.pending = None  # each sentence is the first of its conversation
        started = time.perf_counter()
        candidates = router.candidates(item["text"])
        call = await router.decide(item["text"], ask, candidates=candidates) if candidates else None
        times.append(time.perf_counter() - started)
        expected = item.get("tool")
        if expected is None:
            chat_times.append(times[-1])
        gated["requests" if expected else "others"] += bool(candidates)
        if call is not None:
            asked.append((call.confidence or 0.0, bool(call.missing), expected == call.tool, item["text"]))
        if expected is None:
            if call is not None:
                false_calls.append((item["text"], f"{call.tool} {call.arguments} missing={list(call.missing)}"))
            continue
        per_tool[expected] += 1
        wanted_missing = list(item.get("missing") or [])
        if call is not None and call.tool == expected:
            if wanted_missing:
                ok = list(call.missing[:1]) == wanted_missing[:1]
            else:
                ok = not call.missing
            recalled[expected] += ok
            right[expected] += ok and arguments_right(item.get("arguments") or {}, call.arguments)
            if not ok:
                missed.append((item["text"], expected, f"{call.arguments} missing={list(call.missing)}"))
            elif not arguments_right(item.get("arguments") or {}, call.arguments):
                missed.append((item["text"], expected, f"args {call.arguments} want {item.get('arguments')}"))
        else:
            missed.append((item["text"], expected, "no call" if call is None else f"called {call.tool}"))
        if number % 25 == 0:
            print(f"  {number}/{len(items)} sentences", flush=True)
    requests = sum(per_tool.values())
    others = len(items) - requests
    hard = sum(1 for i in items if i.get("tool") is None and i.get("hard"))
    report = {
        "requests": requests, "others": others, "hard_others": hard,
        "recall": sum(recalled.values()) / requests, "arguments_right": sum(right.values()) / requests,
        "false_calls": len(false_calls),
        "gate_pass_requests": gated["requests"] / requests, "gate_pass_others": gated["others"] / others,
        "per_tool": {tool: f"{recalled[tool]}/{n} recalled, {right[tool]} with right arguments"
                     for tool, n in per_tool.items()},
        "router_ms_p50": percentile(times, 50) * 1000, "router_ms_p95": percentile(times, 95) * 1000,
        "chat_ms_p50": percentile(chat_times, 50) * 1000, "chat_ms_p95": percentile(chat_times, 95) * 1000,
    }
    if misses:
        for p, missing, ok, text in sorted(asked):
            print(f"  P={p:.2f} {'asks ' if missing else 'calls'} {'right' if ok else 'WRONG'}  {text}")
        for text, tool, why in missed:
            print(f"  MISS  {tool:20} {why:50}  {text}")
        for text, what in false_calls:
            print(f"  FALSE {what:70}  {text}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=SET)
    parser.add_argument("--misses", action="store_true", help="print every miss and false call")
    parser.add_argument("--hosted-form", action="store_true",
                        help="check as for a hosted model in router mode: a JSON schema, no grammar")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    data = json.loads(args.set.read_text())
    report = asyncio.run(run(data["items"], data["tools"], args.misses, args.hosted_form))
    print(f"set {args.set.name}{' (hosted form)' if args.hosted_form else ''}: {report['requests']} requests, {report['others']} others "
          f"({report['hard_others']} on the tools' topics)")
    print(f"recall {report['recall']:.1%}, arguments right {report['arguments_right']:.1%}, "
          f"false calls {report['false_calls']}/{report['others']}")
    print(f"past the gate: {report['gate_pass_requests']:.0%} of requests, {report['gate_pass_others']:.0%} of others")
    print(f"router time per sentence: p50 {report['router_ms_p50']:.0f} ms, p95 {report['router_ms_p95']:.0f} ms; "
          f"on the others: p50 {report['chat_ms_p50']:.0f} ms, p95 {report['chat_ms_p95']:.0f} ms")
    for tool, line in report["per_tool"].items():
        print(f"  {tool}: {line}")


if __name__ == "__main__":
    main()
