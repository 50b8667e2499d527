"""Simulated Daily meetings: what happens inside a room once participants join it.

The REST fake (daily_api.py) creates rooms and signs meeting tokens; this adds
the call itself, so Pipecat's real DailyTransport can be tested end to end.
Participants connect over a loopback TCP socket and speak newline-delimited
JSON. Two kinds of client speak it:

- the stand-in `daily` module (tests/fakes/daily_sim/daily), which the bot
  worker imports instead of daily-python when PYTHONPATH puts it first, so
  DailyTransport drives it exactly as it drives daily-python;
- `SimUser` below, the browser's side of a test: it joins with the user's
  token, sends 20 ms of microphone audio every 20 ms, and records what it
  hears and the events it gets.

The plane behaves as Daily documents a meeting: a join needs a live room and,
for a private room, a meeting token signed with the domain's API key, for that
room and not expired (errors named as Daily names them: `no-room`,
`exp-token`, `not-allowed`, `meeting-full`); `max_participants` is enforced;
`participant-joined`, `participant-left`, app messages and audio reach the
other participants; `POST /rooms/:name/eject` and deleting the room eject
participants. Audio is carried as PCM in JSON (base64), within reason for a
two-party call on loopback.

Protocol (one JSON object per line):
  client -> plane: {"op": "join", "room", "token", "userName", "camera"} | {"op": "audio", "pcm", "rate"}
                   | {"op": "video", "width", "height"} (the first camera frame)
                   | {"op": "app-message", "message", "to"} | {"op": "leave"}
  plane -> client: {"op": "joined", "participant", "participants"} | {"op": "error", "type", "message"}
                   | {"op": "participant-joined" | "participant-left", "participant", "reason"?}
                   | {"op": "audio", "from", "pcm", "rate"} | {"op": "app-message", "message", "from"}
                   | {"op": "ejected"} | {"op": "left"}
"""
from __future__ import annotations

import base64
import json
import socket
import socketserver
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .daily_api import FakeDailyAPI

DEFAULT_MAX_PARTICIPANTS = 200  # Daily's documented default


@dataclass
class _Member:
    participant: dict[str, Any]
    conn: "_Connection"


class _Connection(socketserver.StreamRequestHandler):
    plane: "DailyCallPlane"

    def setup(self) -> None:
        super().setup()
        self.lock = threading.Lock()
        self.room: str | None = None
        self.pid: str | None = None

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self.lock:
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                pass  # the peer is gone; its reader notices

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not self.plane.dispatch(self, message):
                break
        self.plane.drop(self, reason="leftCall")


class DailyCallPlane:
    """The meetings of one FakeDailyAPI, served on a loopback TCP port."""

    def __init__(self, api: "FakeDailyAPI") -> None:
        self.api = api
        # The meeting servers' clock, separate from the REST API's so a test can make every
        # token look expired at join time (a job that waited past its token's exp).
        self.clock = api.clock
        self.meetings: dict[str, dict[str, _Member]] = {}
        self.lock = threading.RLock()
        self._server: socketserver.ThreadingTCPServer | None = None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "DailyCallPlane":
        handler = type("Conn", (_Connection,), {"plane": self})
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    # --- what tests look at ------------------------------------------------------
    def present(self, room: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m.participant for m in self.meetings.get(room, {}).values()]

    # --- messages ------------------------------------------------------------------
    def dispatch(self, conn: _Connection, message: dict[str, Any]) -> bool:
        op = message.get("op")
        if op == "join":
            self._join(conn, message)
        elif op == "audio" and conn.pid:
            self._broadcast(conn, {"op": "audio", "from": conn.pid, "pcm": message["pcm"], "rate": message["rate"]})
        elif op == "video" and conn.pid:
            with self.lock:
                member = self.meetings.get(conn.room or "", {}).get(conn.pid)
                if member is not None:
                    member.participant["tracks"]["video"] = {"state": "playable", "width": message["width"],
                                                             "height": message["height"]}
        elif op == "app-message" and conn.pid:
            self._broadcast(conn, {"op": "app-message", "message": message.get("message"), "from": conn.pid},
                            to=message.get("to"))
        elif op == "leave":
            self.drop(conn, reason="leftCall")
            conn.send({"op": "left"})
            return False
        return True

    def _join(self, conn: _Connection, message: dict[str, Any]) -> None:
        room_name = str(message.get("room", ""))
        error = self._admission_error(room_name, message.get("token"))
        claims = self._claims(message.get("token")) if not error else {}
        limit = self._max_participants(room_name)  # before self.lock: the REST fake's lock is never taken inside it
        with self.lock:
            members = self.meetings.setdefault(room_name, {})
            if not error and len(members) >= limit:
                error = ("meeting-full", f"the meeting is full ({limit} participants)")
            if error:
                conn.send({"op": "error", "type": error[0], "message": error[1]})
                self.api.note("join-refused", room_name, claims.get("ud"), error[0])
                return
            pid = str(uuid.uuid4())
            participant = {"id": pid, "info": {"userName": claims.get("u") or message.get("userName") or "",
                                               "userId": claims.get("ud") or pid, "isOwner": bool(claims.get("o")),
                                               "isLocal": False},
                           # Daily's track states: "off" until a frame is sent, then "playable".
                           "tracks": {"video": {"state": "blocked" if not message.get("camera") else "off"}}}
            conn.room, conn.pid = room_name, pid
            others = [m.participant for m in members.values()]
            members[pid] = _Member(participant, conn)
        self.api.note("joined", room_name, participant["info"]["userId"])
        conn.send({"op": "joined", "participant": participant, "participants": others})
        self._broadcast(conn, {"op": "participant-joined", "participant": participant})

    def _admission_error(self, room_name: str, token: Any) -> tuple[str, str] | None:
        with self.api._lock:
            room = self.api._live_room(room_name)
        if room is None:
            return ("no-room", f"the room {room_name} does not exist")
        if not token:
            if room["privacy"] == "private":
                return ("not-allowed", "a meeting token is required to join a private room")
            return None
        try:
            claims = self.api.decode_token(token)
        except Exception:  # noqa: BLE001 - any bad signature or shape
            return ("not-allowed", "the meeting token is not valid for this domain")
        if claims.get("r") and claims["r"] != room_name:
            return ("not-allowed", "the meeting token is for another room")
        if "exp" in claims and claims["exp"] <= self.clock():
            return ("exp-token", "the meeting token has expired")
        if "nbf" in claims and claims["nbf"] > self.clock():
            return ("nbf-token", "the meeting token is not valid yet")
        return None

    def _claims(self, token: Any) -> dict[str, Any]:
        try:
            return self.api.decode_token(token) if token else {}
        except Exception:  # noqa: BLE001
            return {}

    def _max_participants(self, room_name: str) -> int:
        with self.api._lock:
            room = self.api.rooms.get(room_name)
        return int((room or {}).get("config", {}).get("max_participants", DEFAULT_MAX_PARTICIPANTS))

    def _broadcast(self, sender: _Connection, message: dict[str, Any], to: str | None = None) -> None:
        with self.lock:
            targets = [m.conn for pid, m in self.meetings.get(sender.room or "", {}).items()
                       if pid != sender.pid and (to is None or pid == to)]
        for conn in targets:
            conn.send(message)

    def drop(self, conn: _Connection, *, reason: str) -> None:
        """`conn` is out of its meeting: the others hear `participant-left`."""
        with self.lock:
            member = self.meetings.get(conn.room or "", {}).pop(conn.pid or "", None)
        if member is None:
            return
        room = conn.room
        self.api.note("left", room, member.participant["info"]["userId"], reason)
        self._broadcast(conn, {"op": "participant-left", "participant": member.participant, "reason": reason})
        conn.pid = None  # out of the meeting: nothing it still sends reaches anyone

    def eject(self, room_name: str, *, ids: list[str] = (), user_ids: list[str] = ()) -> list[str]:
        """Eject by participant id or token user_id (REST eject, or the room being deleted)."""
        with self.lock:
            chosen = [m for pid, m in self.meetings.get(room_name, {}).items()
                      if pid in ids or m.participant["info"]["userId"] in user_ids]
        for member in chosen:
            member.conn.send({"op": "ejected"})
            self.drop(member.conn, reason="ejected")
        return [m.participant["id"] for m in chosen]

    def end_meeting(self, room_name: str) -> None:
        with self.lock:
            pids = list(self.meetings.get(room_name, {}))
        self.eject(room_name, ids=pids)


@dataclass
class SimUser:
    """The user's browser in a simulated Daily room: microphone out, the bot's voice in."""

    address: str
    room: str
    token: str | None
    rate: int = 16000
    loud_rms: float = 500.0
    events: list[dict[str, Any]] = field(default_factory=list)
    loud_frames: int = 0
    # Milliseconds of the bot's voice heard loud: its chunks vary in size with the transport's
    # settings (40 ms from Pipecat's), so a one-word answer ("Four.") was under 10 chunks.
    loud_ms: float = 0.0
    error: dict[str, Any] | None = None
    participant: dict[str, Any] | None = None
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    _stop: threading.Event = field(default_factory=threading.Event)

    def join(self, timeout: float = 10) -> "SimUser":
        host, port = self.address.split(":")
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._file = self._sock.makefile("rwb")
        self._send({"op": "join", "room": self.room, "token": self.token, "userName": "user"})
        answer = json.loads(self._file.readline())
        if answer["op"] == "error":
            self.error = answer
            self._sock.close()
            return self
        self._sock.settimeout(None)
        self.participant = answer["participant"]
        self.events.append(answer)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._microphone, daemon=True).start()
        return self

    def say(self, samples: np.ndarray) -> None:
        """Queue 16-bit mono samples at `rate`; they go out in real time."""
        self._pending = np.concatenate([self._pending, samples.astype(np.int16)])

    @property
    def speaking(self) -> bool:
        return bool(len(self._pending))

    def leave(self) -> None:
        self._stop.set()
        try:
            self._send({"op": "leave"})
        except OSError:
            pass
        self._sock.close()

    def _send(self, message: dict[str, Any]) -> None:
        self._file.write((json.dumps(message) + "\n").encode())
        self._file.flush()

    def _microphone(self) -> None:
        frame = self.rate // 50
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            chunk, self._pending = self._pending[:frame], self._pending[frame:]
            if len(chunk) < frame:
                chunk = np.concatenate([chunk, np.zeros(frame - len(chunk), dtype=np.int16)])
            try:
                self._send({"op": "audio", "pcm": base64.b64encode(chunk.tobytes()).decode(), "rate": self.rate})
            except OSError:
                return
            sent += 1
            time.sleep(max(0.0, started + sent * 0.02 - time.monotonic()))

    def _read(self) -> None:
        for raw in self._file:
            message = json.loads(raw)
            if message["op"] == "audio":
                samples = np.frombuffer(base64.b64decode(message["pcm"]), dtype=np.int16).astype(np.float64)
                if samples.size and float(np.sqrt(np.mean(samples ** 2))) > self.loud_rms:
                    self.loud_frames += 1
                    self.loud_ms += 1000 * samples.size / int(message.get("rate") or self.rate)
            else:
                self.events.append(message)
                if message["op"] == "ejected":  # like a page Daily threw out: its microphone stops
                    self._stop.set()
