"""Whisper tiny.en with the full 30 s encoder window against the window cut to the audio.

The question `VOICE_STT_WINDOW` answers: does encoding only the audio plus a margin
(voicebot/services/stt.py WindowedWhisperModel) cost accuracy? Every user sentence of
bench_conversation.py's three conversations, plus the questions of bench_bot.py, is
spoken by espeak-ng in two voices (the tests' `-v en-us -s 150` and the default voice),
resampled to 16 kHz with sox, given 0.2 s of trailing silence (what the VAD waits
for), and decoded by both models the way the bot decodes (`StreamingWhisperSTTService._transcribe`'s
options). Word error rate (bench_bot.normalise / word_errors) and decode time p50/p95
per voice and model.

    .venv/bin/python bench/bench_stt_window.py
    .venv/bin/python bench/bench_stt_window.py --model base=/path/to/ct2-whisper-base [--model ...]

`--model LABEL=DIR` compares other CTranslate2 Whisper models instead (each with the
window cut, as the bot runs them), beside the packaged tiny.en.

    .venv/bin/python bench/bench_stt_window.py --beams 5,1

compares beam sizes instead (the default model, window cut): faster-whisper's default
beam of 5, which the bot uses, against others (1: greedy decoding).

    .venv/bin/python bench/bench_stt_window.py --hotwords Pearl

compares the default model without and with the assistant's name as faster-whisper's
hotwords (VOICE_STT_NAME_HINT), and prints the sentences heard differently.

    .venv/bin/python bench/bench_stt_window.py --keywords "Nuvexa,Zorblax Pro,Kestrelline,Quillo,Vantrix"

compares what the transcriber is told of an assistant's keywords (none of which the sentences
hold): nothing, the name alone, the name and keywords as a bare list, and as the sentence the
bot tells it (`transcriber_prompt`); "leaks" counts sentences heard with a keyword in them.

    .venv/bin/python bench/bench_stt_window.py --ladders "0,0.2,0.4,0.6,0.8,1;0,0.5;0"

compares Whisper's temperature fallback ladders (each decode told the name, as the bot's):
WER and decode time p50 / p95 / max; `0` alone is no fallback.

About 2 minutes on 2 cores (--ladders: about 1.5 minutes a ladder). Prints the table; writes nothing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_bot import normalise, percentile, word_errors  # noqa: E402
from bench_conversation import CONVERSATIONS  # noqa: E402
from voicebot.services import transcriber_prompt  # noqa: E402
from voicebot.services.stt import collapse_repeats, load_whisper  # noqa: E402

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "Who wrote Romeo and Juliet?",
             "What language is spoken in Brazil?", "Which animal is known as the king of the jungle?",
             "How many minutes are in an hour?", "Where do penguins live?", "What is the boiling point of water?"]
VOICES = {"en-us, 150 wpm (the tests')": ["-v", "en-us", "-s", "150"], "espeak-ng default": []}


def speech(text: str, voice: list[str], folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "16k.wav"
    subprocess.run(["espeak-ng", *voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True,
                   stderr=subprocess.DEVNULL)
    with wave.open(str(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return np.concatenate([pcm.astype(np.float32) / 32768, np.zeros(3200, np.float32)])


def decode(model: object, audio: np.ndarray, beam: int, hotwords: str | None,
           temperature: float | tuple[float, ...]) -> str:
    segments, _ = model.transcribe(audio, language="en", beam_size=beam,  # type: ignore[attr-defined]
                                   max_new_tokens=int(len(audio) / 16000 * 8) + 8, hotwords=hotwords,
                                   temperature=temperature)
    return collapse_repeats(" ".join(s.text.strip() for s in segments))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                        help="a CTranslate2 Whisper model to compare with tiny.en (window cut)")
    parser.add_argument("--beams", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="beam sizes to compare on the default model, window cut (e.g. 5,1)")
    parser.add_argument("--hotwords", default="", help="compare the default model without and with these hotwords")
    parser.add_argument("--keywords", type=lambda s: [k.strip() for k in s.split(",") if k.strip()], default=[],
                        help="an assistant's keywords (comma-separated): compare the ways of telling them")
    parser.add_argument("--ladders", type=lambda s: [tuple(float(t) for t in part.split(",")) for part in s.split(";")],
                        default=[], help="temperature fallback ladders to compare, e.g. '0,0.2,0.4,0.6,0.8,1;0,0.5;0'")
    args = parser.parse_args()
    sentences = [turn[0] for conversation in CONVERSATIONS for turn in conversation] + QUESTIONS
    cut = load_whisper(windowed=True)  # the default model (base)
    full = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's own fallback ladder
    # label -> (model, beam size, hotwords, temperatures)
    models: dict[str, tuple[object, int, str | None, float | tuple[float, ...]]] = {
        "cut to the audio": (cut, 5, None, full)}
    if args.ladders:
        models = {"ladder " + "/".join(f"{t:g}" for t in ladder): (cut, 5, "Pearl",
                                                                  ladder if len(ladder) > 1 else ladder[0])
                  for ladder in args.ladders}
    elif args.keywords:
        models = {"nothing": (cut, 5, None, full), "name": (cut, 5, "Pearl", full),
                  "name, keywords listed": (cut, 5, ", ".join(["Pearl", *args.keywords]), full),
                  "name, keywords told": (cut, 5, transcriber_prompt("Pearl", args.keywords), full)}
    elif args.hotwords:
        models = {"no hotwords": (cut, 5, None, full), f"hotwords {args.hotwords!r}": (cut, 5, args.hotwords, full)}
    elif args.beams:
        models = {f"beam {beam}": (cut, beam, None, full) for beam in args.beams}
    elif args.model:
        for spec in args.model:
            label, _, path = spec.partition("=")
            models[label] = (load_whisper(path, windowed=True), 5, None, full)
    else:
        models["full 30 s"] = (load_whisper(), 5, None, full)
    print(f"{len(sentences)} sentences; voice, window: WER, decode p50 / p95")
    with tempfile.TemporaryDirectory() as tmp:
        for voice_name, voice in VOICES.items():
            audio = [speech(s, voice, Path(tmp)) for s in sentences]
            heard_by: dict[str, list[str]] = {}
            for model_name, (model, beam, hotwords, temperature) in models.items():
                errors = words = leaks = 0
                times: list[float] = []
                heard_by[model_name] = []
                for text, samples in zip(sentences, audio):
                    started = time.perf_counter()
                    heard = decode(model, samples, beam, hotwords, temperature)
                    heard_by[model_name].append(heard)
                    leaks += any(k.casefold() in heard.casefold() for k in args.keywords)
                    times.append((time.perf_counter() - started) * 1000)
                    reference = normalise(text)
                    errors += word_errors(reference, normalise(heard))
                    words += len(reference)
                print(f"{voice_name:30} {model_name:21} WER {100 * errors / words:5.1f}% ({errors}/{words})  "
                      f"decode {percentile(times, 50):6.0f} / {percentile(times, 95):6.0f} ms"
                      + (f" / max {max(times):6.0f}" if args.ladders else "")
                      + (f"  leaks {leaks}" if args.keywords else ""), flush=True)
            if args.hotwords:
                without, with_ = heard_by.values()
                for text, before, after in zip(sentences, without, with_):
                    if before != after:
                        print(f"    {text!r}: {before!r} -> {after!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
