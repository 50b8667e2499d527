"""Run the server and a real bot worker, and talk to the bot over WebRTC, for end-to-end tests."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import websockets

from tests.livesrv import ROOT, LiveServer

# Each user's API token per database: a `manage.py drf_create_token` is a Django start (~1.5 s),
# and a test file makes a Client for the same user many times over one server's life.
_TOKENS: dict[tuple[str, str], str] = {}

BOT_ENV = {"VOICE_WORKER_HEARTBEAT_SECONDS": "0.5", "VOICE_WORKER_DEAD_AFTER": "4",
           "VOICE_TEARDOWN_POLL_SECONDS": "0.5"}


def speak_to_wav(text: str, path: Path) -> Path:
    """Synthesize a spoken sentence with espeak-ng, as 16-bit mono 48 kHz."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path)], check=True)
    return path


def start_worker(server: LiveServer, *args: str) -> subprocess.Popen:
    """`manage.py runbotworker` beside the server; returns once it listens (models loaded)."""
    log = open(Path(server.env["VOICE_VAR_DIR"]) / f"worker-{time.monotonic_ns()}.log", "w+")
    process = subprocess.Popen([sys.executable, "manage.py", "runbotworker", *args], cwd=ROOT, env=server.env,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log.seek(0)
        if "listening on" in log.read():
            process.log = log  # type: ignore[attr-defined]
            return process
        if process.poll() is not None:
            break
        time.sleep(0.2)
    log.seek(0)
    process.kill()
    raise RuntimeError("worker did not start:\n" + log.read()[-4000:])


def stop_worker(worker: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a worker from `start_worker` and wait for it to exit: its log is complete afterwards."""
    if worker.poll() is None:
        worker.terminate()
    worker.wait(timeout=timeout)


class Client:
    """A signed-in user of the API and the websocket (token auth)."""

    def __init__(self, server: LiveServer, username: str = "demo") -> None:
        self.server = server
        db = server.env.get("DATABASE_URL", server.url)
        key = _TOKENS.get((db, username))
        if key is None:
            key = _TOKENS[db, username] = server.manage("drf_create_token", username).split()[2]
        self.key = key
        self.http = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Token {key}"})
        self.token_header = ("Authorization", f"Token {key}")
        self.events: list[dict[str, Any]] = []
        self.received_at: dict[int, float] = {}  # event id -> time.time() it came in (delivery latency)
        self.ws: Any = None
        self.reconnects = 0
        self._reader: asyncio.Task | None = None

    async def open_ws(self) -> None:
        await self._connect()
        self._reader = asyncio.ensure_future(self._read())

    async def _connect(self) -> None:
        last = max((e.get("id", 0) for e in self.events), default=0)
        url = self.server.url.replace("http://", "ws://") + "/ws/voice/" + (f"?after={last}" if last else "")
        self.ws = await websockets.connect(url, additional_headers=[self.token_header], max_size=2**22)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        assert hello["type"] == "voice.connected"
        self.events.append({"type": "voice.connected", "id": hello["lastEventId"], "sessionId": None, "payload": {}})

    async def _read(self) -> None:
        """Collect events; like the browser, reconnect with ?after=<last id> when the socket drops."""
        while True:
            try:
                async for raw in self.ws:
                    event = json.loads(raw)
                    self.received_at.setdefault(event.get("id", 0), time.time())
                    self.events.append(event)
                return  # closed by us
            except websockets.ConnectionClosed:
                self.reconnects += 1
            while True:
                await asyncio.sleep(0.5)
                try:
                    await self._connect()
                    break
                except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                    continue

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            await asyncio.sleep(0.05)
        summary = [(e["type"], e.get("payload")) for e in self.events[-30:]]
        raise AssertionError(f"timed out waiting for {what}; last events: {summary}")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        if self.ws:
            await self.ws.close()
        self.http.close()


def is_status(status: str):
    return lambda e: e["type"] in ("voice.session.status", "voice.session.end") and e["payload"].get("status") == status


def is_final_transcript(role: str):
    return lambda e: e["type"] == "voice.transcript" and e["payload"].get("role") == role and e["payload"].get("final")


def is_answer(e: dict) -> bool:
    """The assistant's answer on the page, not a tool's start or delayed message said while it works."""
    return is_final_transcript("assistant")(e) and e["payload"].get("kind") not in ("startMessage", "delayedMessage")


def is_start_message(e: dict) -> bool:
    return is_final_transcript("assistant")(e) and e["payload"].get("kind") == "startMessage"


async def reply_once_heard(client: Client, said: dict, text: str, timeout: float = 30) -> dict:
    """Type `text` once the bot has finished saying `said` (as a user answers what they heard), and
    return the assistant's answer to it."""
    after = client.events.index(said)
    await client.wait_for(lambda e: client.events.index(e) > after and e["type"] == "voice.bot.speaking"
                          and not e["payload"]["speaking"], timeout, f"{said['payload'].get('text')!r} heard")
    mark = len(client.events)
    await client.ws.send(json.dumps({"type": "user-message", "content": text}))
    return await client.wait_for(lambda e: client.events.index(e) >= mark and is_answer(e), timeout,
                                 f"the answer to {text!r}")


async def active_session(server: LiveServer, *, persistence: int = 30, username: str = "demo",
                         expect_new: bool = False) -> tuple[Client, Any, str]:
    """Sign in, get the room, join a bot, connect a WebRTC peer; return once the session is active.

    With `expect_new`, the join must have queued a new bot (202), not reused a live session.
    """
    from voicebot.peer import BotPeer

    client = Client(server, username)
    await client.open_ws()
    room = client.http.post("/api/voice/room", json={"assistant": "pearl"}).json()
    join = client.http.post("/api/bot/join", json={"assistant": "pearl", "voiceOnly": True,
                                                    "sessionPersistence": persistence})
    assert join.status_code in ((202,) if expect_new else (200, 202)), join.text
    peer = BotPeer(server.url, room["token"])
    await peer.connect()
    assert peer.answer["sessionId"] == join.json()["sessionId"]
    await client.wait_for(is_status("active"), 20, "session active")
    return client, peer, join.json()["sessionId"]


def end_sessions(server: LiveServer, username: str = "demo", timeout: float = 30) -> None:
    """Leave the user's room at once and wait until none of their sessions is live.

    For tests that share one server: a test that fails midway leaves its peer connected, and the
    next test's join would reuse that session and be refused its connection (409 connection_in_use).
    """
    from voicesessions.models import LIVE_STATUSES

    client = Client(server, username)
    try:
        client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})  # 404 with no room: fine
        deadline = time.monotonic() + timeout
        while any(s["status"] in LIVE_STATUSES for s in client.http.get("/api/voice/sessions").json()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{username}'s sessions were still live {timeout} s after leaving the room")
            time.sleep(0.2)
    finally:
        client.http.close()


# --- a server and worker on hosted fakes (no local model: quick to start) ---------------------------

def hosted_env(url: str, key: str) -> dict[str, str]:
    """A worker with all three stages on one fake OpenAI API at `url`, with `key`."""
    return {**BOT_ENV, "VOICE_STT": "openai", "VOICE_LLM": "openai", "VOICE_TTS": "openai",
            "VOICE_STT_BASE_URL": url, "VOICE_LLM_BASE_URL": url, "VOICE_TTS_BASE_URL": url,
            "VOICE_STT_API_KEY": key, "VOICE_LLM_API_KEY": key, "VOICE_TTS_API_KEY": key,
            "VOICE_STT_MODEL": "gpt-4o-transcribe", "VOICE_LLM_MODEL": "gpt-4.1-mini",
            "VOICE_TTS_MODEL": "gpt-4o-mini-tts", "VOICE_TTS_VOICE": "alloy"}


def in_server(server: LiveServer, code: str) -> str:
    """Run Django code in the live server's database, as an admin's edits would land there
    (`A` is AssistantRecord, `E` ModelEndpoint)."""
    return server.manage("shell", "-c", "from assistants.models import AssistantRecord as A, ModelEndpoint as E; "
                         + code)


@contextmanager
def hosted_stack(var_dir: Path, url: str, key: str, *, setup: str = "",
                 env: dict[str, str] | None = None) -> Iterator[tuple[LiveServer, subprocess.Popen]]:
    """A live server and a one-slot worker on the fake API at `url`; `setup` runs in the
    server's database first (in_server). Both are stopped on the way out, the worker's log
    then complete."""
    from tests.livesrv import start_server

    server = start_server(var_dir, {**hosted_env(url, key), **(env or {})})
    worker = None
    try:
        if setup:
            in_server(server, setup)
        worker = start_worker(server, "--pool-size", "1")
        yield server, worker
    finally:
        if worker is not None:
            stop_worker(worker)
        server.stop()


async def hang_up(client: Client, peer: Any) -> None:
    """The user leaves at once (teardownDelay 0): wait for the session's end, then close both sides."""
    client.http.request("DELETE", "/api/voice/room", json={"teardownDelay": 0})
    await client.wait_for(lambda e: e["type"] == "voice.session.end", 30, "the session's end")
    await peer.close()
    await client.close()
