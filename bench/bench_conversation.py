"""Whole spoken conversations with Pearl on the offline default, judged as a user would.

Three scripted conversations of 20 turns each mix small talk, facts, advice and notes
requests phrased many ways; a fourth (`--only 4`) gives Pearl four custom tools, served by a
local endpoint that checks each call's signature, and mixes requests for them with chat on
their topics. Every turn is spoken (espeak-ng) into the room through the
real WebRTC path (a `voicebot.peer.BotPeer`), and the answer is heard to its end. Per
turn it records:

- the user transcript's word error rate against what was said;
- answer checks: the expected keywords of a fact, no answer repeated from an earlier
  turn, no answer cut mid-sentence;
- the tool called, if any (`voice.tool.call` events): recall on requests, false calls
  on the rest;
- client voice-to-voice latency (end of speech sent -> first bot audio heard).

    .venv/bin/python bench/bench_conversation.py [--conversations 3] [--turns 20] [--only 2,3]

Results: a table on stdout and JSON in bench/results/. A benchmark, not a test: the
machine should be otherwise idle.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_bot import (BOT_ENV, Session, Stack, log, normalise, percentile, phase,  # noqa: E402
                       trimmed_question, word_errors)
from bench_core import UNTHROTTLED, _raise_interrupt, write_results  # noqa: E402

# (what the user says, the tool it asks for or None, words one of which a right answer holds; a
# word marked "!" is one a right answer never holds: "sunny" is no right reading of "it will rain")
Turn = tuple[str, str | None, list[str]]
CONVERSATIONS: list[list[Turn]] = [
    [("Hello Pearl, how are you today?", None, []),
     ("What is the capital of Italy?", None, ["rome"]),
     ("Remember that the plumber is coming on Thursday at ten.", "create_note", []),
     ("How many days are there in a leap year?", None, ["366"]),
     ("Can you give me a tip for staying focused at work?", None, []),
     ("What did I just save?", "read_note", ["plumber"]),
     ("Which planet is closest to the sun?", None, ["mercury"]),
     ("What should I eat for a healthy breakfast?", None, []),
     ("Add call the bank to my plumber note.", "update_note", []),
     ("How many continents are there?", None, ["seven", "7"]),
     ("Thanks, you are very helpful.", None, []),
     ("What notes do I have?", "list_notes", []),
     ("What is the freezing point of water in Celsius?", None, ["zero", "0"]),
     ("Tell me something interesting about octopuses.", None, []),
     ("Do I have a note about the plumber?", "search_notes", []),
     ("Who painted the Mona Lisa?", None, ["leonardo", "da vinci"]),
     ("How can I sleep better at night?", None, []),
     ("What is ten times twelve?", None, ["120", "hundred and twenty"]),
     ("Delete my last note.", "delete_note", []),
     ("Goodbye for now.", None, [])],
    [("Good morning, what can you do?", None, []),
     ("Jot down that my passport expires in March.", "create_note", []),
     ("What is the largest ocean on Earth?", None, ["pacific"]),
     ("How do I make a good cup of tea?", None, []),
     ("How many legs does an insect have?", None, ["six", "6"]),
     ("Read my last note.", "read_note", ["passport"]),
     ("What language do people speak in Mexico?", None, ["spanish"]),
     ("I feel a bit tired today.", None, []),
     ("Take a note called shopping saying buy eggs and bread.", "create_note", []),
     ("What is the chemical symbol for gold?", None, ["au"]),
     ("What does my shopping note say?", "read_note", ["eggs", "bread"]),
     ("How many hours are in a day?", None, ["24", "twenty-four", "twenty four"]),
     ("Give me an idea for a weekend hobby.", None, []),
     ("Who wrote Pride and Prejudice?", None, ["austen"]),
     ("Put milk on my shopping list.", "update_note", []),
     ("What is the tallest mountain in the world?", None, ["everest"]),
     ("Should I drink more water?", None, []),
     ("What have I got written down?", "list_notes", []),
     ("How many sides does a hexagon have?", None, ["six", "6"]),
     ("Thanks Pearl, that is all.", None, [])],
    [("Hi there, I need some help planning my week.", None, []),
     ("Don't let me forget to call my mother on Sunday.", "create_note", []),
     ("What is the boiling point of water in Fahrenheit?", None, ["212"]),
     ("Any advice for a job interview?", None, []),
     ("Which animal is the largest mammal?", None, ["whale"]),
     ("Search my notes for mother.", "search_notes", []),
     ("What is the square root of eighty one?", None, ["nine", "9"]),
     ("How do I stay calm when I am stressed?", None, []),
     ("Remind me to water the plants tomorrow.", "create_note", []),
     ("In which country are the pyramids of Giza?", None, ["egypt"]),
     ("What notes do I have?", "list_notes", []),
     ("How many minutes are in two hours?", None, ["120", "hundred and twenty"]),
     ("What is a good name for a cat?", None, []),
     ("Who was the first person to walk on the moon?", None, ["armstrong"]),
     ("Get rid of that note.", "delete_note", []),
     ("What gas do plants take in from the air?", None, ["carbon dioxide", "co2"]),
     ("Can you recommend an easy dinner?", None, []),
     ("How many strings does a standard guitar have?", None, ["six", "6"]),
     ("What is the opposite of cold?", None, ["hot", "warm"]),
     ("Bye, talk to you later.", None, [])],
    # With the assistant's custom tools (CUSTOM_TOOLS, served by a local signing receiver):
    # requests for them, one without its argument (asked for, then given), and chat on their topics.
    [("Hello Pearl, I have a few questions today.", None, []),
     ("What is the status of my order 4512?", "check_order_status", ["tuesday", "friday", "shipped"]),
     ("What is the capital of Spain?", None, ["madrid"]),
     ("Will it rain in Paris tomorrow?", "get_weather", ["sunny", "no rain", "not rain", "won't rain", "dry",
                                                         "!will rain", "!going to rain", "!yes"]),
     ("I really love ordering books online.", None, []),
     ("Can you check where my parcel is?", None, ["order number"]),
     ("It is 7781.", "check_order_status", ["tuesday", "friday", "shipped"]),
     ("How do weather forecasts work?", None, []),
     ("How many days are there in a week?", None, ["seven", "7"]),
     ("Please book me an appointment on Friday at 3 pm.", "book_appointment", []),
     ("My dentist appointment last month went fine.", None, []),
     ("What is the weather like in Berlin today?", "get_weather", ["sunny"]),
     ("Who wrote Romeo and Juliet?", None, ["shakespeare"]),
     ("Give me a tip for a rainy afternoon.", None, []),
     ("I would like to talk to a real person, please.", "transfer_to_human", []),
     ("What is the largest planet in our solar system?", None, ["jupiter"]),
     ("Has order 3309 been shipped yet?", "check_order_status", ["tuesday", "friday", "shipped"]),
     ("The weather was lovely at my sister's wedding.", None, []),
     ("Thanks for your help.", None, []),
     ("Goodbye Pearl.", None, [])],
]
# Conversation 4's tools: the assistant's custom tools, as an admin would define them.
CUSTOM_TOOLS = [
    ("check_order_status", "Look up the delivery status of a customer's order by its order number.",
     {"type": "object", "properties": {"order_number": {"type": "string", "description": "The order number"}},
      "required": ["order_number"]}, {"status": "shipped on Tuesday, arriving Friday"}),
    ("get_weather", "Get the weather forecast for a city.",
     {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}, "required": ["city"]},
     {"forecast": "sunny, 21 degrees, no rain"}),
    ("book_appointment", "Book an appointment for the caller on a day, optionally at a time.",
     {"type": "object", "properties": {"day": {"type": "string", "description": "The day"},
                                       "time": {"type": "string", "description": "The time, if given"}},
      "required": ["day"]}, {"booked": True}),
    ("transfer_to_human", "Transfer the caller to a live human agent.", {"type": "object", "properties": {}},
     {"transferring": True, "wait": "about two minutes"}),
]
WITH_CUSTOM_TOOLS = 4


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


# The worker's own times of a turn (its voice.latency event), reported as p50 for chat turns and
# tool turns: from the VAD's stop to the final transcript and to the turn's end, then the LLM's
# first words after the turn's end (in a tool turn: the custom-tool check, the call and the
# answer's first words), TTS's first audio after them, and the VAD's stop to the bot's first audio.
STAGES = ("sttMs", "turnEndMs", "llmFirstTokenMs", "ttsFirstAudioMs", "totalMs")


def fact_ok(answer: str, keywords: list[str]) -> bool:
    """Whether `answer` holds one of the right words and none of the wrong ones ("!")."""
    text = answer.lower()
    right = [k for k in keywords if not k.startswith("!")]
    return any(k in text for k in right) and not any(k[1:] in text for k in keywords if k.startswith("!"))


def judge(turn: Turn, result: dict[str, Any], earlier: list[str], tools: list[str]) -> dict[str, Any]:
    """One turn's checks, as a user would make them."""
    said, tool, keywords = turn
    answer = result["assistant"].strip()
    ref, hyp = normalise(said), normalise(result["user_transcript"])
    return {
        "said": said, "heard": result["user_transcript"], "answer": answer,
        "wer_errors": word_errors(ref, hyp), "wer_words": len(ref),
        "fact_ok": None if not keywords else fact_ok(answer, keywords),
        "repeated": _words(answer) in earlier and len(_words(answer).split()) >= 4,
        "cut": not answer or answer[-1] not in ".!?\"')",
        "expected_tool": tool, "tools": tools,
        "tool_ok": (tool in tools) if tool else not tools,
        "client_ms": result["client_total_ms"],
        # A custom tool's turn may begin with its start message ("One moment."): client_ms is the time
        # to that, answer_ms the worker's from the VAD's stop to the answer's own audio.
        "start_message": result.get("start_message", ""), "answer_ms": result.get("answer_ms"),
        "stages": {k: (result.get("latency") or {}).get(k) for k in STAGES},
    }


def unanswered(turn: Turn, index: int) -> dict[str, Any]:
    """The row of a turn the bot never answered: every check on it fails."""
    said, tool, keywords = turn
    return {"said": said, "heard": "", "answer": "", "wer_errors": len(normalise(said)),
            "wer_words": len(normalise(said)), "fact_ok": False if keywords else None,
            "repeated": False, "cut": True, "expected_tool": tool, "tools": [], "tool_ok": not tool,
            "client_ms": None, "turn": index, "unanswered": True}


def custom_tools_receiver() -> Any:
    """A local endpoint for CUSTOM_TOOLS that checks each call's signature and answers per tool."""
    from tests.fakes.receiver import SignedReceiver

    answers = {name: {"result": reply} for name, _, _, reply in CUSTOM_TOOLS}

    class PerTool(SignedReceiver):
        def next_answer(self, record: Any) -> tuple[int, Any, float]:
            status, payload, delay = super().next_answer(record)
            return (status, answers.get(record.path.strip("/"), payload), delay) if status == 200 else \
                (status, payload, delay)

    return PerTool("whsec_bench_conversation_tools")


def give_pearl_tools(stack: Stack, url: str, secret: str, on: bool, start_message: str | None = None) -> None:
    """Put CUSTOM_TOOLS on the demo assistant (or take them off), through Django's ORM; each with its
    default start message, or `start_message` ("" for none)."""
    code = "from assistants.models import AssistantRecord as A; a = A.objects.get(slug='pearl'); a.tools.all().delete()"
    more = "" if start_message is None else f", start_message={start_message!r}"
    if on:
        for name, description, parameters, _ in CUSTOM_TOOLS:
            code += (f"; a.tools.create(name={name!r}, description={description!r}, parameters={parameters!r}, "
                     f"url='{url}/{name}', secret={secret!r}, timeout_seconds=10, max_retries=1{more})")
    stack.server.manage("shell", "-c", code)


@contextmanager
def tools_for(stack: Stack, n: int, start_message: str | None = None) -> Iterator[None]:
    """Conversation `n`'s custom tools on Pearl while it runs (only conversation 4 has them)."""
    if n != WITH_CUSTOM_TOOLS:
        yield
        return
    with custom_tools_receiver() as endpoint:
        worker_log = Path(stack.worker.log.name)
        mark = worker_log.stat().st_size
        give_pearl_tools(stack, endpoint.url, endpoint.secret, on=True, start_message=start_message)
        # As in a deployment where the tools were set before the call: an idle worker reads a new tool's
        # check prompt within NEW_PROMPTS_EVERY (voicebot/worker.py); without it the first check of each
        # tool reads ~100-170 tokens while the user waits (1.4-2.4 s on 2 cores).
        deadline = time.monotonic() + 120
        while b"new prompt(s) into the LLM's cache" not in worker_log.read_bytes()[mark:]:
            if time.monotonic() > deadline:
                log("  the worker did not read the tools' prompts within 120 s: the first checks will")
                break
            time.sleep(0.5)
        try:
            yield
        finally:
            give_pearl_tools(stack, endpoint.url, endpoint.secret, on=False)
        log(f"  the tools' endpoint got {len(endpoint.signed())} signed calls: "
            f"{[(r.path, r.json['arguments']) for r in endpoint.signed()]}")


async def converse(stack: Stack, username: str, script: list[Turn], audio: Path, n: int) -> list[dict[str, Any]]:
    session = await Session(stack, username).open()
    out: list[dict[str, Any]] = []
    earlier: list[str] = []
    try:
        for i, turn in enumerate(script, 1):
            wav, _ = trimmed_question(turn[0], audio / f"c{n}-t{i:02d}.wav")
            mark = len(session.client.events)
            try:
                result = await session.ask(wav, turn[0], timeout=90)
            except RuntimeError as exc:  # no answer within the timeout: a failed turn, not a lost run
                log(f"  c{n} t{i:02d} UNANSWERED: {turn[0]!r}: {str(exc)[:120]}")
                out.append(unanswered(turn, i))
                continue
            tools = [e["payload"]["name"] for e in session.client.events[mark:] if e["type"] == "voice.tool.call"]
            row = judge(turn, result, earlier, tools)
            row["turn"] = i
            earlier.append(_words(row["answer"]))
            out.append(row)
            flags = [f for f, bad in (("WRONG", row["fact_ok"] is False), ("REPEAT", row["repeated"]),
                                      ("CUT", row["cut"]), ("TOOL?", not row["tool_ok"])) if bad]
            held = f"[{row['start_message']} then {row['answer_ms']} ms] " if row["start_message"] else ""
            log(f"  c{n} t{i:02d} {row['client_ms']} ms {' '.join(flags) or 'ok'}: {row['heard']!r} -> "
                f"{held}{row['answer'][:90]!r}{' ' + str(tools) if tools else ''}")
            await asyncio.sleep(0.3)
    finally:
        await session.close()
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    latency = [r["client_ms"] for r in rows if r["client_ms"] is not None]
    facts = [r for r in rows if r["fact_ok"] is not None]
    requests = [r for r in rows if r["expected_tool"]]
    chat = [r for r in rows if not r["expected_tool"]]
    by_turn: dict[int, list[float]] = {}
    for r in rows:
        if r["client_ms"] is not None:
            by_turn.setdefault(r["turn"], []).append(r["client_ms"])
    return {
        "turns": len(rows),
        "unanswered": sum(bool(r.get("unanswered")) for r in rows),
        "wer": sum(r["wer_errors"] for r in rows) / max(1, sum(r["wer_words"] for r in rows)),
        "fact_accuracy": sum(bool(r["fact_ok"]) for r in facts) / max(1, len(facts)),
        "repeated_answers": sum(r["repeated"] for r in rows),
        "cut_answers": sum(r["cut"] for r in rows),
        "tool_recall": sum(r["tool_ok"] for r in requests) / max(1, len(requests)),
        "false_tool_calls": sum(not r["tool_ok"] for r in chat),
        "latency_ms": {"p50": percentile(latency, 50), "p95": percentile(latency, 95), "n": len(latency)},
        "held_turns": sum(bool(r.get("start_message")) for r in rows),
        "answer_ms_after_start_message": {
            "p50": percentile([r["answer_ms"] for r in rows if r.get("answer_ms") is not None], 50),
            "max": max([r["answer_ms"] for r in rows if r.get("answer_ms") is not None], default=None)},
        "latency_by_turn_p50": {t: percentile(v, 50) for t, v in sorted(by_turn.items())},
        "stages_p50": {kind: {k: percentile([r["stages"][k] for r in group if (r.get("stages") or {}).get(k) is not None],
                                            50) for k in STAGES}
                       for kind, group in (("chat", [r for r in rows if not r["tools"]]),
                                           ("tool", [r for r in rows if r["tools"]]))},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The fourth (custom tools) runs with --only 4; the default is the first three, as before.
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--start-message", help="the custom tools' start message (default: the tools' own; "
                        "'' for none)")
    parser.add_argument("--only", help="which conversations, e.g. 2,3 (default: the first --conversations)")
    args = parser.parse_args()
    chosen = ([int(n) for n in args.only.split(",")] if args.only
              else list(range(1, min(args.conversations, len(CONVERSATIONS)) + 1)))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="voice-bench-conversation-"))
    audio = tmp / "audio"
    audio.mkdir()
    env = {**BOT_ENV, "DEBUG": "False", "REDIS_URL": "", "VOICE_PROVIDER": "local",
           "VOICE_BOT_QUEUE": "voicesessions.queue.DatabaseBotJobQueue", "PYTHONUNBUFFERED": "1", **UNTHROTTLED}
    stack = Stack("conversation", tmp, [], env)
    rows: list[dict[str, Any]] = []
    try:
        phase("server + `runbotworker --pool-size 2`")
        stack.start()
        for n in chosen:
            script = CONVERSATIONS[n - 1]
            phase(f"conversation {n}: {min(args.turns, len(script))} turns")
            # Each conversation starts with no notes, as a new caller's would.
            user = "demo" if n % 2 else "admin"
            with sqlite3.connect(stack.var / "db.sqlite3", timeout=10) as db:
                db.execute("DELETE FROM voicebot_note WHERE user_id = (SELECT id FROM auth_user WHERE username = ?)",
                           (user,))
            with tools_for(stack, n, args.start_message):
                rows += [{**r, "conversation": n} for r in
                         asyncio.run(converse(stack, user, script[:args.turns], audio, n))]
    finally:
        stack.stop()
    result = summary(rows)
    print()
    print(f"{result['turns']} turns over {len(chosen)} conversations, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}")
    print(f"unanswered turns         {result['unanswered']}")
    print(f"transcript WER           {result['wer']:.1%}")
    print(f"fact accuracy            {result['fact_accuracy']:.0%}")
    print(f"repeated answers         {result['repeated_answers']}")
    print(f"answers cut mid-sentence {result['cut_answers']}")
    print(f"tool recall              {result['tool_recall']:.0%}   false tool calls {result['false_tool_calls']}")
    print(f"voice-to-voice (client)  p50 {result['latency_ms']['p50']:.0f} ms, p95 {result['latency_ms']['p95']:.0f} ms")
    if result["held_turns"]:
        held = result["answer_ms_after_start_message"]
        print(f"turns begun with a tool's start message {result['held_turns']}: the answer's own audio "
              f"p50 {held['p50'] or 0:.0f} ms, max {held['max'] or 0:.0f} ms after the VAD's stop (worker)")
    print("p50 by turn index        " + ", ".join(f"{t}: {v:.0f}" for t, v in result["latency_by_turn_p50"].items()))
    for kind, stages in result["stages_p50"].items():
        print(f"worker's stages, {kind:4} p50 " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items() if v is not None))
    path = write_results({"started": dt.datetime.now().isoformat(timespec="seconds"), "summary": result,
                          "turns": rows}, "conversation")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
