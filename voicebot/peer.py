"""A WebRTC peer that talks to a room's bot like a browser does, without a browser.

Used by the end-to-end tests and the voice benchmarks: it gets the room
token, posts its offer to the real signalling endpoint, plays a WAV file as
its microphone, pings on the data channel like Pipecat's JS client, and
records what the bot says back.
"""
from __future__ import annotations

import asyncio
import fractions
import time
import wave
from dataclasses import dataclass, field

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from .ice import restrict_host_candidates

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
MAX_SILENCE_FILL_S = 10  # a gap longer than this in what the bot sent is a clock jump, not silence


def read_wav_48k_mono(path: str) -> np.ndarray:
    """16-bit mono PCM at 48 kHz (resampled linearly if the file has another rate)."""
    with wave.open(path) as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if w.getnchannels() == 2:
            data = data[::2]
        rate = w.getframerate()
    if rate != RATE:
        positions = np.arange(0, len(data), rate / RATE)
        data = np.interp(positions, np.arange(len(data)), data.astype(np.float64)).astype(np.int16)
    return data


class MicrophoneTrack(MediaStreamTrack):
    """Silence, then the queued utterances in real time, then silence again."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pending = np.zeros(0, dtype=np.int16)
        self.pts = 0
        self.started: float | None = None
        self.speech_ended_at: float | None = None  # monotonic time the last queued sample went out

    def say(self, samples: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, samples])

    async def recv(self) -> AudioFrame:
        if self.started is None:
            self.started = time.monotonic()
        wait = self.started + self.pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk, self.pending = self.pending[:FRAME], self.pending[FRAME:]
        if len(chunk) and not len(self.pending):
            self.speech_ended_at = time.monotonic()
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


@dataclass
class HeardAudio:
    """What came back from the bot."""

    pcm: bytearray = field(default_factory=bytearray)
    rate: int = RATE
    first_loud_at: float | None = None
    loud_frames: int = 0

    def rms(self) -> float:
        samples = np.frombuffer(bytes(self.pcm), dtype=np.int16).astype(np.float64)
        return float(np.sqrt(np.mean(samples ** 2))) if samples.size else 0.0

    def write_wav(self, path: str) -> None:
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(bytes(self.pcm))


class BotPeer:
    """One WebRTC connection to a room's bot through the service's signalling endpoint."""

    def __init__(self, base_url: str, room_token: str, loud_rms: float = 500.0, user_token: str | None = None,
                 hosts: list[str] | None = None) -> None:
        """`user_token`: the user's DRF token, sent beside the room token so the offer counts as the
        owner's (only the owner may replace a live connection, as a page reload does). `hosts`: the
        addresses this peer offers as ICE candidates (loopback unless the peer is on a host of its own)."""
        self.base_url = base_url
        self.room_token = room_token
        self.user_token = user_token
        self.loud_rms = loud_rms
        self.mic = MicrophoneTrack()
        self.heard = HeardAudio()
        restrict_host_candidates(hosts or ["127.0.0.1"])
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN: loopback only
        self.answer: dict | None = None
        self._tasks: list[asyncio.Task] = []

    async def connect(self, timeout: float = 60) -> dict:
        self.pc.addTrack(self.mic)
        channel = self.pc.createDataChannel("chat")

        async def ping() -> None:  # Pipecat drops audio to peers that stop pinging
            while True:
                if channel.readyState == "open":
                    channel.send("ping")
                await asyncio.sleep(1)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._listen(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(f"{self.base_url}/api/voice/webrtc/offer",
                                         json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
                                         headers=self._headers())
        if response.is_error:  # the service's JSON error says why (bot_unavailable, connection_in_use...)
            raise httpx.HTTPStatusError(f"offer refused: {response.status_code} {response.text[:300]}",
                                        request=response.request, response=response)
        self.answer = response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer["sdp"], type=self.answer["type"]))
        self._tasks.append(asyncio.ensure_future(ping()))
        return self.answer

    def _headers(self) -> dict[str, str]:
        if self.user_token:
            return {"Authorization": f"Token {self.user_token}", "X-Room-Token": self.room_token}
        return {"Authorization": f"Bearer {self.room_token}"}

    async def _listen(self, track: MediaStreamTrack) -> None:
        next_pts: int | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            if frame.layout.name == "stereo":
                samples = samples[::2]
            self.heard.rate = frame.sample_rate
            # The bot leaves out most packets of settled silence (an Opus DTX sender does too):
            # a browser's jitter buffer plays the skipped time as silence, and so does this.
            if next_pts is not None and frame.pts is not None and frame.pts > next_pts:
                gap = int((frame.pts - next_pts) * frame.time_base * frame.sample_rate)
                self.heard.pcm += bytes(2 * min(gap, frame.sample_rate * MAX_SILENCE_FILL_S))
            if frame.pts is not None:
                next_pts = frame.pts + int(frame.samples / frame.sample_rate / frame.time_base)
            self.heard.pcm += samples.astype(np.int16).tobytes()
            if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > self.loud_rms:
                self.heard.loud_frames += 1
                if self.heard.first_loud_at is None:
                    self.heard.first_loud_at = time.monotonic()

    def say_wav(self, path: str) -> None:
        self.heard.first_loud_at = None
        self.mic.say(read_wav_48k_mono(path))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
