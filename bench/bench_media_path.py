"""The media path's CPU on a fixed load: Pipecat and aiortc's own against ours (voicebot/mediapath.py).

The capacity bench's rounds minutes apart spread by more than these changes, so this
measures the media path alone: --pairs aiortc peer connections in one process, each side
sending the other speech half of the time and silence the rest, through Pipecat's output
track, for --seconds; reported is the process's CPU. Four variants, each in a fresh child
process pinned to one core, alternating --rounds times so the machine's drift falls on all:

- `pipecat`: Pipecat's `RawAudioTrack` and aiortc as they come (bare Pipecat's path);
- `frames`: the first two of mediapath's changes alone (20 ms frames, the numpy level meter),
  as it was before the Opus packets and the loop decoding;
- `every`: voicebot/mediapath.py installed, but every packet of settled silence sent, as it
  was before the output track left most of them out (SILENCE_PACKET_EVERY = 1);
- `stereo`: voicebot/mediapath.py installed, but the voice coded as aiortc codes it (up-mixed to
  stereo, libopus's complexity 10), as it was before `voice_encoder`;
- `ours`: voicebot/mediapath.py installed (20 ms frames, Opus packets from a mono encoder at
  complexity 5 with silence encoded once and one packet in 20 of settled silence sent, decoding
  on the loop, the numpy level meter).

    .venv/bin/python bench/bench_media_path.py [--pairs 8] [--seconds 20] [--rounds 3] [--core 1]
                                               [--variants pipecat,every,stereo,ours]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


VARIANTS = ("pipecat", "frames", "every", "stereo", "ours")


async def _load(pairs: int, seconds: float, variant: str) -> dict[str, float]:
    import numpy as np
    from aiortc import RTCPeerConnection
    from pipecat.transports.smallwebrtc.transport import RawAudioTrack

    from voicebot import mediapath

    if variant in ("ours", "every", "stereo"):
        mediapath.install()
        if variant == "every":
            mediapath.SILENCE_PACKET_EVERY = 1
        if variant == "stereo":
            from aiortc.codecs.opus import OpusEncoder

            mediapath.voice_encoder = lambda complexity: OpusEncoder()
    elif variant == "frames":
        import aiortc.rtp

        aiortc.rtp.compute_audio_level_dbov = mediapath.audio_level_dbov
    track_class = RawAudioTrack if variant == "pipecat" else mediapath.WholeOpusFrameTrack
    rate = 24000
    t = np.arange(rate * 2) / rate
    speech = (7000 * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 180 * t)).astype(np.int16)
    peers, readers, tracks = [], [], []
    received = [0]

    async def read(remote) -> None:
        while True:
            await remote.recv()
            received[0] += 1

    for _ in range(pairs):
        a, b = RTCPeerConnection(), RTCPeerConnection()
        for pc in (a, b):  # each side speaks and listens, as a user and the bot do
            track = track_class(sample_rate=rate)
            pc.addTrack(track)
            tracks.append(track)
            pc.on("track", lambda remote: readers.append(asyncio.ensure_future(read(remote))))
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        peers += [a, b]
    while received[0] < pairs * 2 * 10:  # every connection carries audio
        await asyncio.sleep(0.05)
    started, cpu = time.monotonic(), time.process_time()
    frames = received[0]
    while time.monotonic() - started < seconds:
        for index, track in enumerate(tracks):  # half of each 2 s speaking, as in a conversation
            if index % 2 == int(time.monotonic() - started) % 2 and len(track._chunk_queue) < 10:
                track.add_audio_bytes(speech[:rate // 5].tobytes())
        await asyncio.sleep(0.1)
    used, elapsed, frames = time.process_time() - cpu, time.monotonic() - started, received[0] - frames
    for task in readers:
        task.cancel()
    for pc in peers:
        await pc.close()
    return {"cpu_s_per_connection_minute": used / pairs / (elapsed / 60), "core_percent": 100 * used / elapsed,
            "frames_per_second": frames / elapsed}


def child(variant: str, pairs: int, seconds: float) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
    import django

    django.setup()
    print(json.dumps(asyncio.run(_load(pairs, seconds, variant))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", default="1")
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which to run, 'pipecat' first")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v in VARIANTS]
    if args.child:
        child(args.child, args.pairs, args.seconds)
        return
    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_ in range(1, args.rounds + 1):
        for variant in variants:
            out = subprocess.run(["taskset", "-c", args.core, sys.executable, __file__, "--child", variant,
                                  "--pairs", str(args.pairs), "--seconds", str(args.seconds)],
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(figures)
            print(f"round {round_} {variant:8s}: {figures['core_percent']:5.1f}% of the core, "
                  f"{figures['cpu_s_per_connection_minute']:.2f} CPU s per connection-minute, "
                  f"{figures['frames_per_second']:.0f} frames/s received", flush=True)
    medians = {variant: statistics.median(r["core_percent"] for r in rs) for variant, rs in results.items()}
    print("median % of the core: " + ", ".join(f"{v} {m:.1f}" for v, m in medians.items()))
    for variant in variants[1:]:
        ratios = [o["core_percent"] / p["core_percent"] for p, o in zip(results[variants[0]], results[variant])]
        print(f"{variant} / {variants[0]} by round: {', '.join(f'{r:.3f}' for r in ratios)} "
              f"(median {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    main()
