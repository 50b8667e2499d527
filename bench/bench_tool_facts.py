"""Does the offline model tell the user what a custom tool answered?

A tool's answer reaches the local model as a fact (voicebot/services/guards.py `tool_facts`)
and the model puts it in words. On the conversation bench the weather tool said "sunny, 21
degrees, no rain" and the assistant said "Yes, it will rain in Paris tomorrow": a yes/no
question leads a small model to agree with it. This asks the bot's own request (its prompt,
the history as `tool_facts` makes it, its sampling) for 26 tool answers, twelve of which say
the opposite of what the question assumes, and checks each answer's words: right when it
holds one of the fact's words and none of the words of a wrong reading.

    .venv/bin/python bench/bench_tool_facts.py [--seeds 2] [--show]

Prints the share of right answers overall and on the contradicting half, and the answers
with --show. Runs on the machine's llama.cpp (the shipped Qwen2.5-Coder-1.5B, or
VOICE_LLM_MODEL_PATH).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")

# (the question, the tool, its arguments, its answer, words of a right answer, words of a wrong one);
# the first twelve contradict what the question assumes.
ITEMS: list[tuple[str, str, dict[str, Any], dict[str, Any], list[str], list[str]]] = [
    ("Will it rain in Paris tomorrow?", "get_weather", {"city": "Paris"},
     {"forecast": "sunny, 21 degrees, no rain"}, ["sunny", "no rain", "not rain", "won't rain", "dry"],
     ["will rain", "going to rain", "yes"]),
    ("Has order 3309 been shipped yet?", "check_order_status", {"order_number": "3309"},
     {"status": "not shipped yet, being packed"}, ["not", "packed", "packing"], ["has been shipped", "yes"]),
    ("Is my flight BA117 on time?", "flight_status", {"flight_number": "BA117"},
     {"status": "delayed by 45 minutes"}, ["delayed", "45"], ["is on time", "yes"]),
    ("Is the pharmacy open on Sunday?", "opening_hours", {"place": "pharmacy"},
     {"sunday": "closed", "weekdays": "9 am to 6 pm"}, ["closed", "not open"], ["yes", "is open on sunday"]),
    ("Is my prescription ready to pick up?", "prescription_status", {},
     {"ready": False, "expected": "tomorrow after 2 pm"}, ["not", "tomorrow"], ["yes", "is ready"]),
    ("Did my payment go through?", "payment_status", {},
     {"status": "declined", "reason": "card expired"}, ["declined", "expired", "did not", "didn't"],
     ["yes", "went through"]),
    ("Is there a table for four free tonight?", "check_table", {"party_size": 4, "day": "tonight"},
     {"available": False, "next_free": "tomorrow at 7 pm"}, ["no", "not", "tomorrow"], ["yes", "is a table"]),
    ("Will it be cold in Oslo tomorrow?", "get_weather", {"city": "Oslo"},
     {"forecast": "mild, 14 degrees, cloudy"}, ["mild", "14", "not cold", "not be cold"], ["yes", "will be cold"]),
    ("Is my car repair finished?", "repair_status", {},
     {"status": "waiting for a part", "estimate": "Thursday"}, ["waiting", "part", "thursday", "not"],
     ["yes", "is finished", "is ready"]),
    ("Has my refund arrived?", "refund_status", {},
     {"status": "approved, not paid yet", "paid_by": "Monday"}, ["not", "monday"], ["yes", "has arrived"]),
    ("Is the 8:15 train to Leeds running?", "train_status", {"train": "8:15 to Leeds"},
     {"status": "cancelled"}, ["cancelled", "canceled", "not running"], ["yes", "is running", "on time"]),
    ("Do I have an appointment on Friday?", "list_appointments", {"day": "Friday"},
     {"appointments": []}, ["no", "don't", "do not", "none"], ["yes", "you have an appointment"]),
    # The same kinds of answers, agreeing with the question.
    ("Will it be sunny in Rome tomorrow?", "get_weather", {"city": "Rome"},
     {"forecast": "sunny, 27 degrees"}, ["sunny", "27"], ["rain", "no,"]),
    ("What is the status of my order 4512?", "check_order_status", {"order_number": "4512"},
     {"status": "shipped on Tuesday, arriving Friday"}, ["tuesday", "friday", "shipped"], ["not shipped"]),
    ("Is flight LH400 delayed?", "flight_status", {"flight_number": "LH400"},
     {"status": "delayed by two hours"}, ["delayed", "two hours", "2 hours"], ["on time", "not delayed"]),
    ("When does the library open tomorrow?", "opening_hours", {"place": "library"},
     {"tomorrow": "10 am to 5 pm"}, ["10", "ten"], ["closed"]),
    ("What's my account balance?", "account_balance", {},
     {"balance": "1,240 euros"}, ["1,240", "1240", "twelve hundred", "one thousand two hundred"], []),
    ("How long is the wait for a taxi?", "taxi_eta", {},
     {"eta_minutes": 8}, ["8", "eight"], []),
    ("Is my parcel out for delivery?", "check_order_status", {"order_number": "7781"},
     {"status": "out for delivery, arriving by 6 pm"}, ["6", "six", "out for delivery", "today"], ["not out"]),
    ("How many loyalty points do I have?", "loyalty_points", {},
     {"points": 350}, ["350", "three hundred and fifty", "three hundred fifty"], []),
    ("Is the gym open now?", "opening_hours", {"place": "gym"},
     {"open_now": True, "closes": "10 pm"}, ["open", "10"], ["closed", "not open"]),
    ("What time is my dentist appointment?", "list_appointments", {"day": "Thursday"},
     {"appointments": [{"what": "dentist", "time": "9:30 am"}]}, ["9:30", "nine thirty", "half past nine"], []),
    ("How hot will it be in Madrid today?", "get_weather", {"city": "Madrid"},
     {"forecast": "hot, 34 degrees, clear"}, ["34", "thirty-four", "thirty four"], []),
    ("I would like to talk to a real person, please.", "transfer_to_human", {},
     {"transferring": True, "wait": "about two minutes"}, ["transfer", "transferring", "two minutes", "2 minutes"],
     ["be here to help"]),
    ("Please book me an appointment on Friday at 3 pm.", "book_appointment", {"day": "Friday", "time": "3 pm"},
     {"booked": True}, ["booked", "scheduled", "confirmed"], ["not booked", "couldn't", "could not"]),
    ("Did my payment go through?", "payment_status", {},
     {"status": "completed", "amount": "49 euros"}, ["completed", "went through", "yes", "49"],
     ["declined", "did not", "didn't"]),
]
CONTRADICTING = 12


def messages_for(question: str, tool: str, arguments: dict[str, Any], answer: dict[str, Any]) -> list[dict]:
    """The bot's request for the turn a custom tool answered: its prompt, the exchange as facts."""
    from bench_llm_models import system_prompt
    from voicebot.services.guards import alternate, tool_facts

    call = {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": json.dumps(arguments)}}
    history = [{"role": "system", "content": system_prompt()},
               {"role": "user", "content": "Hello Pearl, I have a few questions today."},
               {"role": "assistant", "content": "Of course! What would you like to know?"},
               {"role": "user", "content": question}, {"role": "assistant", "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"ok": True, "result": answer})}]
    return alternate(tool_facts(history))


def right(text: str, good: list[str], bad: list[str]) -> bool:
    """One of the right words and none of the wrong ones, each as whole words ("no" is not in "know")."""
    said = lambda phrase: re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text.lower()) is not None  # noqa: E731
    return any(said(g) for g in good) and not any(said(b) for b in bad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print every answer")
    parser.add_argument("--yes-no", action="store_true", help="let answers begin with Yes or No "
                        "(the bot's sampling before FACTS_SAMPLING)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import django

    django.setup()
    import httpx

    from bench_llm_models import stream_chat
    from django.conf import settings
    from voicebot.services.llm import FACTS_SAMPLING, LOCAL_SAMPLING, MAX_REPLY_TOKENS, start_local_server

    _server, base = start_local_server(settings.VOICE_LLM_MODEL_PATH or None)
    results: list[tuple[int, bool, str]] = []
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        for index, (question, tool, arguments, answer, good, bad) in enumerate(ITEMS):
            for seed in range(args.seeds):
                reply = stream_chat(client, base, messages_for(question, tool, arguments, answer), seed,
                                    max_tokens=MAX_REPLY_TOKENS, temperature=0.2, **LOCAL_SAMPLING,
                                    **({} if args.yes_no else FACTS_SAMPLING))
                text = reply.get("text") or reply.get("error", "")
                results.append((index, right(text, good, bad), text.strip()))
                if args.show:
                    print(f"  {'ok ' if results[-1][1] else 'BAD'} {question} -> {text.strip()!r}", flush=True)
    contra = [ok for index, ok, _ in results if index < CONTRADICTING]
    print(f"{len(results)} answers ({args.seeds} seeds), {time.perf_counter() - started:.0f} s")
    print(f"right: {sum(ok for _, ok, _ in results) / len(results):.0%} overall, "
          f"{sum(contra) / len(contra):.0%} where the tool's answer contradicts the question, "
          f"{sum(ok for i, ok, _ in results if i >= CONTRADICTING) / (len(results) - len(contra)):.0%} where it agrees")


if __name__ == "__main__":
    main()
