"""A cheaper media path for the embedded WebRTC transport (issue 14).

Profiling a worker at 5 sessions (docs/benchmarks.md, "Where a session's CPU goes") put
most of a session's CPU in the media path that Pipecat's SmallWebRTC transport and aiortc
run for every outgoing audio frame. Two costs there are avoidable without changing what
the browser hears:

- aiortc measures each outgoing frame's level for the RTP audio-level header extension
  (RFC 6465) in a pure-Python loop over its samples: 12-18% of the worker's samples in
  that profile. `audio_level_dbov` computes the same integer with numpy.
- Pipecat's `RawAudioTrack` hands aiortc 10 ms frames, but aiortc's Opus encoder packs
  20 ms, so every other frame goes through the track, the sender's loop and a thread-pool
  hop for nothing. `WholeOpusFrameTrack` hands over 20 ms frames: one of each per packet.
- aiortc's sender encodes every frame in its thread pool, silence included, and a bot is
  silent most of a call: 144 us a frame here (73 the Opus encode, the rest the hop), 50
  frames a second a session. Once the sender has negotiated Opus, the track encodes on the
  event loop itself with aiortc's own encoder (`OpusPackets`) and hands the sender packets,
  which aiortc takes as they are (its `pack()`: no hop); once the encoder has settled on
  silence, its packet for silence (3 bytes, the same each time) is reused without encoding,
  and only one packet in 20 of it is sent, as Opus DTX (its TOC byte alone); the browser
  plays the skipped timestamps as silence. Between those packets the track sleeps until the
  next is due or audio comes, rather than waking to build each frame it leaves out. The
  encoder is aiortc's, coding mono at libopus's complexity 5 where aiortc up-mixes to stereo
  at 10 (`voice_encoder`): the same sound, 3 dB louder, for about half the encoder's time.
  The first ~20 packets after a long silence are coded as after a short one (decoded, 41-44
  dB apart). aiortc adds no RFC 6465 level header to packets it did not encode; nothing of
  ours reads it.
- On the way in, aiortc hands each received frame to a decoder thread of the receiver's,
  which hands the decoded frame back to the event loop (`run_coroutine_threadsafe`): two
  thread hops a packet, 50 a second a session, as much CPU again as the decode itself
  (~45 us each here). `LoopDecodingReceiver` decodes an audio frame on the loop as it
  completes, and decodes Opus to mono (`MonoOpusDecoder`): the pipeline keeps mono 16 kHz
  of the user, and libopus's own mono is the samples the resampler's down-mix of aiortc's
  stereo gave (85 dB apart) for less work.
- aiortc's receiver holds each packet of the user's voice until four more have come (its
  jitter buffer's prefetch, for smooth playback): 80 ms on every turn's end, start and
  transcript. The bot plays none of it; `UnheldJitterBuffer` hands each packet on in order
  as it comes.
- Each frame of the user's audio is a trip through the transport and every processor that
  reads it. While the worker is busy, the loop decoder hands over two packets as one 40 ms
  frame (`InputFrames`, set from the worker's load by its heartbeat): half the trips, for
  ~20 ms more voice-to-voice, which is why an idle worker keeps 20 ms.

Neither library offers these as settings, so `install()` swaps them in where they are
looked up at run time (aiortc's `rtp.compute_audio_level_dbov`, `RTCRtpSender.send` and
`replaceTrack`, `decoder_worker`, the peer connection module's `RTCRtpReceiver` (and with
it the jitter buffer), the transport module's `RawAudioTrack`). It is idempotent; a
session calls it before it builds its transport. `tests/test_mediapath.py` holds each to
the originals' output.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from typing import Any, Awaitable, Callable

import av
import numpy as np
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import Decoder, get_decoder
from aiortc.codecs.opus import SAMPLES_PER_FRAME, TIME_BASE, OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from av import AudioFrame, Packet
from pipecat.transports.smallwebrtc.transport import RawAudioTrack

logger = logging.getLogger("voicebot.mediapath")

FRAME_MS = 20  # aiortc's Opus encoder packs 20 ms (960 samples at 48 kHz) a packet
MIN_AUDIO_LEVEL = -127  # dBov, RFC 6465's floor
MAX_SAMPLE = 32767
SETTLED_SILENCE = 3  # the same silence packet this many times in a row: the encoder has settled
# In settled silence one packet in this many is sent, as Opus DTX (400 ms apart, as libopus's DTX
# keeps a receiver informed); the others are left out, their RTP timestamps skipped as a DTX
# sender skips them. 1: every packet sent as it is (bench/bench_media_path.py's `every`).
SILENCE_PACKET_EVERY = 20
# libopus's complexity (0-10) for the bot's voice. aiortc leaves libopus's 10: at the 96 kbit/s
# it asks for, speech is coded in CELT mode (every packet's TOC), where 5 decodes 36 dB from 10 on
# the tests' voiced signal and 29 dB on espeak-ng's speech, for about half the encoder's time
# (docs/benchmarks.md, "The bot's voice coded as mono"). install() sets it (VOICE_OPUS_COMPLEXITY).
OPUS_COMPLEXITY = 5


def audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A's level of an s16 frame in -dBov, as aiortc computes it.

    The sum of squares is taken in int64, exactly as aiortc's Python loop sums whole
    numbers, so the result is the same integer (aiortc divides by the per-channel
    sample count even for stereo; so does this).
    """
    samples = np.frombuffer(frame.planes[0], dtype=np.int16).astype(np.int64)
    energy = int(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * MAX_SAMPLE * MAX_SAMPLE))
    if rms <= 0:
        return MIN_AUDIO_LEVEL
    return round(min(max(20 * math.log10(rms), MIN_AUDIO_LEVEL), 0))


def voice_encoder(complexity: int) -> OpusEncoder:
    """aiortc's Opus encoder (its bitrate, frame size and VoIP mode), coding mono at `complexity`.

    A TTS voice is one channel; aiortc up-mixes every frame to stereo and codes both, which
    took ~40% of the encoder's time for nothing. A mono Opus stream is what a WebRTC
    receiver expects unless it asked for stereo (RFC 7587: `stereo=0` is the default), and
    its decoder plays it on both channels.
    """
    encoder = OpusEncoder()
    encoder.codec.layout = "mono"
    encoder.resampler = av.AudioResampler(format="s16", layout="mono", rate=encoder.codec.sample_rate,
                                          frame_size=SAMPLES_PER_FRAME)
    encoder.codec.options = {**encoder.codec.options, "compression_level": str(complexity)}
    return encoder


class OpusPackets:
    """Opus payloads for a track's frames, from aiortc's own encoder, silence encoded once.

    libopus codes digital silence as the same 3-byte packet once its state has settled (a
    few frames after sound). From then on a silent frame gets that packet without the
    encoder; the encoder's state is the settled one it would keep, so sound that follows
    is coded as after a short silence.
    """

    def __init__(self) -> None:
        self._encoder = voice_encoder(OPUS_COMPLEXITY)
        self._silence: bytes | None = None
        self._last: bytes | None = None
        self._repeats = 0
        self.encoded = 0  # frames that went through the encoder

    @property
    def silence(self) -> bytes | None:
        """The settled silence packet (None while sound or the settling goes on)."""
        return self._silence

    def encode(self, frame: AudioFrame) -> list[bytes]:
        """The payloads for one frame (none while the resampler fills, at the start)."""
        samples = np.frombuffer(frame.planes[0], dtype=np.int16, count=frame.samples * len(frame.layout.channels))
        silent = not samples.any()
        if silent and self._silence is not None:
            return [self._silence]
        payloads, _ = self._encoder.encode(frame)
        self.encoded += 1
        if not silent:
            self._silence, self._last, self._repeats = None, None, 0
        elif len(payloads) == 1 and payloads[0] == self._last:
            self._repeats += 1
            if self._repeats >= SETTLED_SILENCE - 1:
                self._silence = payloads[0]
        else:
            self._last, self._repeats = (payloads[0] if len(payloads) == 1 else None), 0
        return payloads


class WholeOpusFrameTrack(RawAudioTrack):
    """Pipecat's output track, pacing 20 ms frames instead of 10 ms.

    Pipecat's track names its frame size `_samples_per_10ms`; only the size changes here.
    Audio whose length is a whole number of 10 ms but not of 20 ms (Pipecat's output
    transport sends 40 ms chunks, so only an odd caller would) is padded with up to 10 ms
    of silence rather than refused.
    """

    def __init__(self, sample_rate: int, auto_silence: bool = True) -> None:
        super().__init__(sample_rate, auto_silence)
        self._samples_per_10ms = sample_rate * FRAME_MS // 1000
        self._bytes_per_10ms = self._samples_per_10ms * 2
        self.opus: OpusPackets | None = None  # set once the sender has negotiated Opus
        self._payloads: deque[bytes] = deque()
        self._packets = 0
        self._quiet = 0  # settled-silence packets since the last one sent
        self.left_out = 0  # silence packets not sent (a receiver's jitter buffer plays them as silence)
        self._audio_added = asyncio.Event()
        self._audio_at = 0.0  # when audio was last added (time.time(), Pipecat's pacing clock)
        self.skipped_wakeups = 0  # frames of settled silence left out without waking for each

    def send_opus_packets(self) -> None:
        """From now on `recv()` gives Opus packets (the sender negotiated Opus)."""
        if self.opus is None:  # a second negotiation must not restart the encoder mid-stream
            self.opus = OpusPackets()
            logger.info("[VoiceSession] output audio as Opus packets, settled silence encoded once")

    async def recv(self) -> AudioFrame | Packet:
        """The next 20 ms: a frame for aiortc to encode, or once Opus is agreed a packet.

        In settled silence only one packet in SILENCE_PACKET_EVERY is handed over, as an Opus
        DTX sender does: a bot is silent most of a call, and each packet costs the sender's
        loop, SRTP and a UDP send. The receiver plays the timestamps between as silence.
        """
        if self.opus is None:
            return await super().recv()
        while True:
            while not self._payloads:  # paced by Pipecat's recv(), one frame each 20 ms
                await self._sleep_through_silence()
                self._payloads.extend(self.opus.encode(await super().recv()))
            payload = self._payloads.popleft()
            # One packet is 20 ms: the RTP timestamps aiortc's encoder gives, from 0.
            pts = self._packets * SAMPLES_PER_FRAME
            self._packets += 1
            if payload != self.opus.silence or SILENCE_PACKET_EVERY <= 1:
                self._quiet = 0
            else:
                self._quiet += 1
                if (self._quiet - 1) % SILENCE_PACKET_EVERY:
                    self.left_out += 1
                    continue
                # The packet sent is DTX's: the silence packet's TOC byte alone (RFC 6716: no
                # frame data), which a receiver knows as "nothing to play here" (WebRTC's NetEq:
                # a packet of 2 bytes or less). A gap after a normal packet is a loss to NetEq:
                # it conceals it, and the next answer began stretched (Chrome's concealedSamples).
                payload = payload[:1]
            packet = Packet(payload)
            packet.pts, packet.time_base = pts, TIME_BASE
            return packet

    async def _sleep_through_silence(self) -> None:
        """In settled silence, wait once for the frames that will be left out, not once a frame.

        Pipecat's track wakes every 20 ms to build a frame of silence, which the encoder then
        answers with the cached silence packet and the DTX rule leaves out: 19 wakeups in 20 for
        nothing, 50 a second a session. Here the track sleeps until the last of those frames is
        due, or until audio is added, and counts the frames due before the audio came as left
        out; their timestamps are skipped as before, and audio starts in the frame it would have.
        """
        if (self.opus.silence is None or self._quiet == 0 or SILENCE_PACKET_EVERY <= 1
                or self._chunk_queue or self._timestamp == 0):
            return
        left = (-self._quiet) % SILENCE_PACKET_EVERY  # frames before the next one that is sent
        if not left:
            return
        frame_secs = self._samples_per_10ms / self._sample_rate  # the track's frame (20 ms here)
        due = self._start + self._timestamp / self._sample_rate  # when the next frame is due
        self._audio_added.clear()
        until = due + (left - 1) * frame_secs
        if until > time.time():
            try:
                await asyncio.wait_for(self._audio_added.wait(), until - time.time())
            except asyncio.TimeoutError:
                pass
        # Frames due before audio was added (or by now) were silence: left out without building them.
        heard = self._audio_at if self._chunk_queue else time.time()
        frames = min(left, max(0, math.floor((heard - due) / frame_secs) + 1))
        self._timestamp += frames * self._samples_per_10ms
        self._packets += frames
        self._quiet += frames
        self.left_out += frames
        self.skipped_wakeups += frames

    def add_audio_bytes(self, audio_bytes: bytes) -> asyncio.Future:
        self._audio_at = time.time()
        self._audio_added.set()
        ten_ms = self._bytes_per_10ms // 2
        if len(audio_bytes) % self._bytes_per_10ms == ten_ms:  # whole 10 ms, not whole 20 ms
            audio_bytes += bytes(ten_ms)
        return super().add_audio_bytes(audio_bytes)  # anything else is refused, as Pipecat's track does


class MonoOpusDecoder(OpusDecoder):
    """aiortc's Opus decoder, giving mono: libopus mixes down itself, as cheaply as it decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.codec.layout = "mono"


def decoder_for(codec: Any) -> Decoder:
    """Mono for Opus; aiortc's own decoder for any other codec."""
    return MonoOpusDecoder() if codec.mimeType.lower() == "audio/opus" else get_decoder(codec)


class InputFrames:
    """How many decoded packets a frame of the user's audio holds, for every session of a worker.

    Each frame is a trip through the transport's resampler and every processor that reads
    the user's audio: at 40 ms a frame instead of aiortc's 20, half as many, 13% less of the
    worker's CPU at 8 sessions on one core. But a frame waits for its second packet, and the
    VAD sees the end of speech a frame later: ~20 ms more voice-to-voice (docs/benchmarks.md).
    So a worker with CPU to spare keeps 20 ms frames, and one that is busy, where queueing
    costs more than that, takes longer ones (`follow_load`, from the worker's heartbeat).
    """

    def __init__(self) -> None:
        self.join = 1  # now
        self.busy_join = 1  # once the worker is busy (install() sets it from VOICE_INPUT_FRAME_MS)

    def follow_load(self, load: float, busy_at: float) -> int:
        """Longer frames from `busy_at` of the worker's cores, 20 ms again under 80% of it (no
        flapping at the edge). Returns the join now."""
        if load >= busy_at:
            self.join = self.busy_join
        elif load < 0.8 * busy_at:
            self.join = 1
        return self.join


input_frames = InputFrames()


class LoopDecoder:
    """Stands where an audio receiver's decoder queue was: `put()` decodes on the event loop.

    It takes what aiortc's receiver puts on that queue, `(codec, encoded frame)` or None at
    the end, and gives the receiver's track what aiortc's decoder thread would have, as many
    decoded frames at a time as one as `frames.join` says (`InputFrames`).
    """

    def __init__(self, receiver: RTCRtpReceiver, decode_error: threading.Event,
                 frames: InputFrames | None = None) -> None:
        self._receiver = receiver
        self._decode_error = decode_error
        self._decoder: Decoder | None = None
        self._codec_name: str | None = None
        self._frames = frames or input_frames
        self._held: list[AudioFrame] = []  # decoded frames waiting for the rest of their join

    def put(self, task: tuple[Any, Any] | None) -> None:
        frames: asyncio.Queue = self._receiver._track._queue  # the track is set after the receiver is made
        if task is None:
            if self._held:
                frames.put_nowait(joined(self._held))  # what the user said last is not lost
                self._held = []
            frames.put_nowait(None)  # the track ends, as aiortc's thread ends it
            return
        codec, encoded = task
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = decoder_for(codec), codec.name
        try:
            decoded = self._decoder.decode(encoded)
        except av.FFmpegError as exc:  # as aiortc's thread: keep the decoder, drop the frame
            logger.warning("[VoiceSession] failed to decode a %s frame: %s", codec.name, exc)
            self._decode_error.set()
            return
        for frame in decoded:
            if self._held and not same_form(self._held[0], frame):
                frames.put_nowait(joined(self._held))  # a codec change: no frame mixes two rates
                self._held = []
            self._held.append(frame)
            if len(self._held) >= self._frames.join:
                frames.put_nowait(joined(self._held))
                self._held = []


def same_form(a: AudioFrame, b: AudioFrame) -> bool:
    """Whether two frames' samples can be laid end to end: one rate, layout and sample format."""
    return (a.sample_rate, a.layout.name, a.format.name) == (b.sample_rate, b.layout.name, b.format.name)


def joined(frames: list[AudioFrame]) -> AudioFrame:
    """Frames of one form as one, stamped with the first one's time (what a receiver would play)."""
    if len(frames) == 1:
        return frames[0]
    first = frames[0]
    # to_ndarray() of packed audio is one row of interleaved samples: laid end to end along it.
    made = AudioFrame.from_ndarray(np.concatenate([f.to_ndarray() for f in frames], axis=1),
                                   format=first.format.name, layout=first.layout.name)
    made.sample_rate, made.pts, made.time_base = first.sample_rate, first.pts, first.time_base
    return made


class UnheldJitterBuffer(JitterBuffer):
    """aiortc's audio jitter buffer, handing each packet on as soon as those before it have come.

    aiortc's receiver keeps four audio frames in hand (`prefetch=4`), and learns that a frame
    is whole only from the next packet's timestamp: every packet of the user's voice reaches the
    pipeline 80 ms after it arrived. That evens out a network's jitter for a listener; the bot
    does not listen, it measures (VAD, turn model, Whisper), and a late packet only delays the
    ones after it, as before. An audio packet is a whole frame (RFC 7587: one Opus packet per RTP
    packet; G.711 likewise), so it goes on at once. Order, duplicates and gaps are aiortc's: a
    packet comes out only after the one before it, one per arrival.
    """

    def __init__(self) -> None:
        super().__init__(capacity=16)  # aiortc's audio capacity

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packet: RtpPacket | None = self._packets[self._origin % self._capacity]
        if packet is None:
            return None  # the next packet in order has not come: wait for it, as aiortc does
        self.remove(1)
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # _data: the receiver's depayload


class LoopDecodingReceiver(RTCRtpReceiver):
    """aiortc's receiver, decoding audio with a `LoopDecoder` (video keeps aiortc's thread), its
    packets handed on unheld (`UnheldJitterBuffer`).

    aiortc has no setting for where it decodes or how long it holds packets; its queue, error
    flag and jitter buffer are private, so they are reached by their mangled names.
    """

    def __init__(self, kind: str, transport: Any) -> None:
        super().__init__(kind, transport)
        if kind == "audio":
            self._RTCRtpReceiver__decoder_queue = LoopDecoder(self, self._RTCRtpReceiver__decoder_error)
            self._RTCRtpReceiver__jitter_buffer = UnheldJitterBuffer()


def no_thread_for_a_loop_decoder(worker: Callable[..., None]) -> Callable[..., None]:
    """Wrap aiortc's `decoder_worker`, the receiver's thread, to return at once for a LoopDecoder."""
    def decoder_worker(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
        if not isinstance(input_q, LoopDecoder):
            worker(loop, input_q, output_q, decode_error)

    decoder_worker.wraps_for_loop_decoders = True  # type: ignore[attr-defined]
    return decoder_worker


Send = Callable[[RTCRtpSender, Any], Awaitable[None]]
ReplaceTrack = Callable[[RTCRtpSender, Any], None]


def _tell_the_track(sender: RTCRtpSender) -> None:
    """Switch the sender's track to Opus packets if the sender has agreed on Opus."""
    track = sender.track
    if isinstance(track, WholeOpusFrameTrack) and getattr(sender, "_voice_sends_opus", False):
        track.send_opus_packets()


def tells_the_track_its_codec(send: Send) -> Send:
    """Wrap `RTCRtpSender.send`, where aiortc starts sending with the negotiated codecs.

    Only there is the codec known: a track whose sender agreed on anything but Opus (G.711
    for an old client) keeps handing over frames for aiortc to encode.
    """
    async def send_telling_the_track(sender: RTCRtpSender, parameters: Any) -> None:
        sender._voice_sends_opus = bool(parameters.codecs) and parameters.codecs[0].mimeType.lower() == "audio/opus"
        _tell_the_track(sender)
        await send(sender, parameters)

    send_telling_the_track.tells_the_track = True  # type: ignore[attr-defined]
    return send_telling_the_track


def tells_a_new_track_its_codec(replace: ReplaceTrack) -> ReplaceTrack:
    """Wrap `RTCRtpSender.replaceTrack`: Pipecat's transport gives the sender its output track
    this way once the peer has connected, after `send()`."""
    def replace_telling_the_track(sender: RTCRtpSender, track: Any) -> None:
        replace(sender, track)
        _tell_the_track(sender)

    replace_telling_the_track.tells_the_track = True  # type: ignore[attr-defined]
    return replace_telling_the_track


def install(input_frame_ms: int = FRAME_MS, opus_complexity: int = OPUS_COMPLEXITY) -> None:
    """Use the cheaper level meter, 20 ms output frames, Opus packets (mono, at `opus_complexity`)
    and loop decoding, the user's audio in frames of `input_frame_ms` (a multiple of aiortc's
    20 ms) once the worker is busy (`InputFrames`)."""
    global OPUS_COMPLEXITY
    OPUS_COMPLEXITY = max(0, min(10, opus_complexity))
    import aiortc.rtcpeerconnection
    import aiortc.rtcrtpreceiver
    import aiortc.rtp
    import pipecat.transports.smallwebrtc.transport as smallwebrtc

    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov
    smallwebrtc.RawAudioTrack = WholeOpusFrameTrack
    if not getattr(RTCRtpSender.send, "tells_the_track", False):
        RTCRtpSender.send = tells_the_track_its_codec(RTCRtpSender.send)
    if not getattr(RTCRtpSender.replaceTrack, "tells_the_track", False):
        RTCRtpSender.replaceTrack = tells_a_new_track_its_codec(RTCRtpSender.replaceTrack)
    input_frames.busy_join = max(1, input_frame_ms // FRAME_MS)
    aiortc.rtcpeerconnection.RTCRtpReceiver = LoopDecodingReceiver
    if not getattr(aiortc.rtcrtpreceiver.decoder_worker, "wraps_for_loop_decoders", False):
        aiortc.rtcrtpreceiver.decoder_worker = no_thread_for_a_loop_decoder(aiortc.rtcrtpreceiver.decoder_worker)
