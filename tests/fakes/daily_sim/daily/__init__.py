"""A stand-in for daily-python, for tests: the parts Pipecat's DailyTransport uses.

A test puts tests/fakes/daily_sim first on the bot worker's PYTHONPATH, so
`import daily` in Pipecat finds this module, and sets DAILY_SIM_ADDRESS to a
simulated meeting plane (tests/fakes/daily_call.py). Pipecat then runs its
real DailyTransport code against it: join and leave with completions, the
events daily-python fires (participant joined and left, call state, app
messages), per-participant audio renderers and custom audio tracks.

Like daily-python, calls return at once and report through completion
callbacks and EventHandler methods called from this module's own threads,
never from the caller's: Pipecat's handlers block until its event loop has
taken the event, so an event fired on the loop's own thread would deadlock.
Custom audio tracks are paced in real time: write_frames completes once the
audio has played, as daily-python's does.
"""
from __future__ import annotations

import base64
import enum
import json
import os
import queue
import socket
import threading
import time
import uuid
from typing import Any, Callable

import numpy as np

_TRACKS: dict[str, "CustomAudioTrack"] = {}


class LogLevel(enum.Enum):
    Off = 0
    Error = 1
    Warn = 2
    Info = 3
    Debug = 4
    Trace = 5


class Daily:
    @staticmethod
    def init(**_kwargs: Any) -> None:
        pass

    @staticmethod
    def set_log_level(_level: Any) -> None:
        pass

    @staticmethod
    def create_speaker_device(name: str, sample_rate: int = 16000, channels: int = 1,
                              non_blocking: bool = False) -> "VirtualSpeakerDevice":
        return VirtualSpeakerDevice(name, sample_rate, channels)

    @staticmethod
    def select_speaker_device(_name: str) -> None:
        pass

    @staticmethod
    def create_native_vad(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError("the simulated Daily has no native VAD")


class EventHandler:
    """daily-python calls these; DailyTransportClient overrides the ones it needs."""


class AudioData:
    def __init__(self, audio_frames: bytes, sample_rate: int, num_channels: int = 1) -> None:
        self.audio_frames = audio_frames
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self.bits_per_sample = 16
        self.num_audio_frames = len(audio_frames) // 2 // num_channels


class VideoFrame:  # the bot never receives video here
    pass


class VirtualSpeakerDevice:
    """Only used with audio_in_user_tracks=False, which the bot does not use."""

    def __init__(self, name: str, sample_rate: int, channels: int) -> None:
        self.name, self.sample_rate, self.channels = name, sample_rate, channels

    def read_frames(self, _num_frames: int, completion: Callable | None = None) -> bytes:
        if completion:
            completion(b"")
        return b""


class CustomAudioSource:
    """Audio the bot sends; played out in real time to the meeting."""

    def __init__(self, sample_rate: int, channels: int = 1, auto_silence: bool = True) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.client: CallClient | None = None
        self._clock: float | None = None
        self._lock = threading.Lock()

    def write_frames(self, frames: bytes, completion: Callable | None = None) -> None:
        count = len(frames) // 2 // self.channels

        def play() -> None:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._clock or now)
                self._clock = start + count / self.sample_rate
            if self.client is not None:
                self.client._send_audio(frames, self.sample_rate, self.channels)
            time.sleep(max(0.0, start + count / self.sample_rate - time.monotonic()))
            if completion:
                completion(count)

        threading.Thread(target=play, daemon=True).start()


class CustomAudioTrack:
    def __init__(self, source: CustomAudioSource) -> None:
        self.source = source
        self.id = str(uuid.uuid4())
        _TRACKS[self.id] = self


class CustomVideoSource:
    """The bot's camera: the first frame written is announced to the meeting (size only)."""

    def __init__(self, width: int, height: int, color_format: str = "RGB") -> None:
        self.width, self.height, self.color_format = width, height, color_format
        self.client: CallClient | None = None
        self.frames = 0

    def write_frame(self, frame: Any) -> None:
        self.frames += 1
        if self.frames == 1 and self.client is not None:
            self.client._write({"op": "video", "width": self.width, "height": self.height, "bytes": len(frame)})


class CustomVideoTrack:
    def __init__(self, source: CustomVideoSource) -> None:
        self.source = source
        self.id = str(uuid.uuid4())
        _TRACKS[self.id] = self  # type: ignore[assignment]


def _done(completion: Callable | None, *result: Any) -> None:
    if completion:
        threading.Thread(target=completion, args=result or (None,), daemon=True).start()


class CallClient:
    """One participant's connection to a simulated meeting."""

    def __init__(self, event_handler: EventHandler | None = None) -> None:
        self.handler = event_handler or EventHandler()
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._write_lock = threading.Lock()
        self._local: dict[str, Any] = {}
        self._remote: dict[str, dict[str, Any]] = {}
        self._renderers: dict[str, tuple[Callable, str, int]] = {}
        self._user_name = ""
        self._leaving = False
        self._events: queue.Queue = queue.Queue()  # fired in order from one thread of our own
        threading.Thread(target=self._fire_events, daemon=True).start()

    # --- joining and leaving -----------------------------------------------------
    def set_user_name(self, name: str) -> None:
        self._user_name = name

    def join(self, meeting_url: str, meeting_token: str | None = None, client_settings: Any = None,
             completion: Callable | None = None) -> None:
        threading.Thread(target=self._join, args=(meeting_url, meeting_token, client_settings or {}, completion),
                         daemon=True).start()

    def _join(self, url: str, token: str | None, settings: dict[str, Any], completion: Callable | None) -> None:
        host, port = os.environ["DAILY_SIM_ADDRESS"].split(":")
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=10)
            self._file = self._sock.makefile("rwb")
            camera = settings.get("inputs", {}).get("camera", {}).get("isEnabled", False)
            self._write({"op": "join", "room": url.rstrip("/").rsplit("/", 1)[-1], "token": token,
                         "userName": self._user_name, "camera": bool(camera)})
            answer = json.loads(self._file.readline())
        except (OSError, ValueError) as exc:
            _done(completion, None, f"connection-error: {exc}")
            return
        if answer["op"] == "error":
            self._sock.close()
            self._emit("on_call_state_updated", "left")
            _done(completion, None, f"{answer['type']}: {answer['message']}")
            return
        self._sock.settimeout(None)
        self._local = {**answer["participant"], "info": {**answer["participant"]["info"], "isLocal": True}}
        for device in ("microphone", "camera"):
            track = settings.get("inputs", {}).get(device, {}).get("settings", {}).get("customTrack", {}).get("id")
            if track in _TRACKS:
                _TRACKS[track].source.client = self
        self._emit("on_call_state_updated", "joined")
        data = {"participants": {"local": self._local}, "meetingSession": {"id": str(uuid.uuid4())}}
        _done(completion, data, None)
        for participant in answer["participants"]:  # those already there are announced too
            self._remote[participant["id"]] = participant
            self._emit("on_participant_joined", participant)
        threading.Thread(target=self._read, daemon=True).start()

    def leave(self, completion: Callable | None = None) -> None:
        self._leaving = True
        try:
            self._write({"op": "leave"})
        except OSError:
            pass
        self._emit("on_call_state_updated", "left")
        _done(completion, None)

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()

    # --- state -----------------------------------------------------------------------
    def participants(self) -> dict[str, Any]:
        return {"local": self._local, **self._remote}

    def participant_counts(self) -> dict[str, int]:
        return {"present": 1 + len(self._remote), "hidden": 0}

    # --- media and messages ---------------------------------------------------------
    def set_audio_renderer(self, participant_id: str, callback: Callable, audio_source: str = "microphone",
                           sample_rate: int = 16000, callback_interval_ms: int = 20, **_kwargs: Any) -> None:
        self._renderers[participant_id] = (callback, audio_source, sample_rate)

    def set_video_renderer(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def send_app_message(self, message: Any, participant_id: str | None = None,
                         completion: Callable | None = None) -> None:
        self._write({"op": "app-message", "message": message, "to": participant_id})
        _done(completion, None)

    def _send_audio(self, frames: bytes, rate: int, channels: int) -> None:
        samples = np.frombuffer(frames, dtype=np.int16)
        if channels > 1:
            samples = samples[::channels]
        try:
            self._write({"op": "audio", "pcm": base64.b64encode(samples.tobytes()).decode(), "rate": rate})
        except OSError:
            pass

    # Settings calls the transport makes; the simulated meeting accepts them as they are.
    def update_subscription_profiles(self, _profiles: Any, completion: Callable | None = None) -> None:
        _done(completion, None)

    def update_subscriptions(self, participant_settings: Any = None, profile_settings: Any = None,
                             completion: Callable | None = None) -> None:
        _done(completion, None)

    def update_inputs(self, _inputs: Any, completion: Callable | None = None) -> None:
        _done(completion, None)

    def update_publishing(self, _publishing: Any, completion: Callable | None = None) -> None:
        _done(completion, None)

    def update_remote_participants(self, _remote: Any, completion: Callable | None = None) -> None:
        _done(completion, None)

    def add_custom_audio_track(self, track_name: str, audio_track: CustomAudioTrack, ignore_audio_level: bool = True,
                               completion: Callable | None = None) -> None:
        audio_track.source.client = self
        _done(completion, None)

    def remove_custom_audio_track(self, track_name: str, completion: Callable | None = None) -> None:
        _done(completion, None)

    # --- the meeting's side --------------------------------------------------------------
    def _write(self, message: dict[str, Any]) -> None:
        if self._file is None:
            raise OSError("not connected")
        with self._write_lock:
            self._file.write((json.dumps(message) + "\n").encode())
            self._file.flush()

    def _emit(self, name: str, *args: Any) -> None:
        self._events.put((name, args))

    def _fire_events(self) -> None:
        while True:
            name, args = self._events.get()
            method = getattr(self.handler, name, None)
            if method is not None:
                method(*args)

    def _read(self) -> None:
        try:
            for raw in self._file:
                message = json.loads(raw)
                op = message["op"]
                if op == "audio":
                    self._render(message)
                elif op == "participant-joined":
                    self._remote[message["participant"]["id"]] = message["participant"]
                    self._emit("on_participant_joined", message["participant"])
                elif op == "participant-left":
                    self._remote.pop(message["participant"]["id"], None)
                    self._emit("on_participant_left", message["participant"], message.get("reason", "leftCall"))
                elif op == "app-message":
                    self._emit("on_app_message", message["message"], message["from"])
                elif op == "ejected":
                    self._emit("on_error", "ejected: you were ejected from the meeting")
                    self._emit("on_call_state_updated", "left")
                    return
                elif op == "left":
                    return
        except (OSError, ValueError):
            pass
        if not self._leaving:  # the meeting went away under us
            self._emit("on_call_state_updated", "left")

    def _render(self, message: dict[str, Any]) -> None:
        renderer = self._renderers.get(message["from"])
        if renderer is None:
            return
        callback, source, rate = renderer
        samples = np.frombuffer(base64.b64decode(message["pcm"]), dtype=np.int16)
        if message["rate"] != rate and samples.size:
            positions = np.linspace(0, samples.size - 1, int(samples.size * rate / message["rate"]))
            samples = np.interp(positions, np.arange(samples.size), samples).astype(np.int16)
        callback(message["from"], AudioData(samples.tobytes(), rate, 1), source)
