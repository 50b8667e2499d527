"""Settings for the voice session service.

Everything comes from the environment through django-environ, with defaults
that give the embedded mode: SQLite, an in-process channel layer, the `local`
room provider and no network. Production sets DATABASE_URL, REDIS_URL,
VOICE_PROVIDER=daily and the provider keys (see README, "Configuration").
"""
from __future__ import annotations

import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VOICE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "[::1]", "testserver"]),
    CSRF_TRUSTED_ORIGINS=(list, ["http://127.0.0.1:8000", "http://localhost:8000"]),
)
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/.

    A key in the repository would be a shared secret; a fresh random key on
    every start would log everybody out and void every room token.
    """
    if key := env.str("SECRET_KEY", default=""):
        return key
    path = VAR_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env("DEBUG")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",  # makes `manage.py runserver` an ASGI (Daphne) server
    "voiceproject.apps.VoiceAdminConfig",  # django.contrib.admin with the dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # locks out password guessing on the login forms (admin and sign-in)
    "csp",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "assistants",
    "voicesessions",
    "voicebot",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "voiceproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "voiceproject.wsgi.application"
ASGI_APPLICATION = "voiceproject.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Daphne serves from threads: wait for the writer lock instead of failing
    # with "database is locked", and let readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
else:
    # A pool per process: Daphne runs sync views in threads, and persistent
    # per-thread connections (CONN_MAX_AGE) would pile up to max_connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": env.int("DATABASE_POOL_SIZE", default=10), "timeout": 10}
    # A partition, not a refusal: with the database's host unreachable, a pooled connection's
    # query would wait for TCP to give up (many minutes) and every request with it. libpq's
    # tcp_user_timeout drops a connection whose data goes unacknowledged this long, and
    # connect_timeout bounds a new one, so the request fails into a 503 within seconds
    # (tests/test_cluster.py cuts a web server off from db).
    DATABASES["default"]["OPTIONS"].update({
        "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=5),
        "tcp_user_timeout": env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=5000)})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Which channels-redis layer carries events to the websockets. "pubsub" (the default): one
# Redis PUBLISH a message, delivered in one hop. "core": the list-based layer, which spends
# three to four sequential round trips on every message a server process receives, so a
# process 50 ms from Redis got events ~0.4 s apart, later and later in a burst
# (tests/test_cluster.py, scenario 6; docs/benchmarks.md). Pub/sub drops what is published
# while a server is not subscribed; nothing is lost by that here: every event is stored
# first, and the sockets catch up from the database (VOICE_WS_REFRESH_SECONDS, ?after=).
VOICE_CHANNEL_LAYER = env.str("VOICE_CHANNEL_LAYER", default="pubsub")
if REDIS_URL:
    from redis.exceptions import ConnectionError as _RedisConnectionError

    # redis-py's own reconnect-and-retry, once, for a connection a Redis restart left broken.
    # Without it the first call on an idle pub/sub connection after a restart failed, and a
    # websocket's handshake answered 500 (Channels subscribes the consumer's own channel
    # before connect() runs; test_production and the cluster's scenario 6 caught it).
    # health_check_interval: such connections are also noticed by a PING before use.
    _REDIS_LAYER_HOST = {"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5,
                         "health_check_interval": 10, "retry_on_error": [_RedisConnectionError]}
if REDIS_URL and VOICE_CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                  "CONFIG": {"hosts": [_REDIS_LAYER_HOST]}}}
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above channels-redis's 5 s blocking pop: redis-py 8
            # defaults to 5 s, which kills every idle consumer with "Timeout reading".
            "CONFIG": {"hosts": [_REDIS_LAYER_HOST], "capacity": 1000, "expiry": 60},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                  "CONFIG": {"capacity": 1000, "expiry": 60}}}

# Django's cache holds the API rate-limit counters: shared through Redis in
# production, so a user's limit holds across every server process.
CACHES = ({"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                       "KEY_PREFIX": "voice", "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2}}}
          if REDIS_URL else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})

# --- Auth, i18n, static ------------------------------------------------------
# django-axes first: it refuses a locked-out username+IP before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)  # wrong passwords before the lockout
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours a lockout lasts
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # one guesser cannot lock a user out everywhere
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start otherwise
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files this service keeps (call recordings): local media files by default, any Django storage
# backend in production (e.g. VOICE_STORAGE_BACKEND=storages.backends.s3.S3Storage with its
# options as JSON in VOICE_STORAGE_OPTIONS). Never served publicly: staff play recordings
# through the admin, which checks who asks.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": env.str("VOICE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
                "OPTIONS": env.json("VOICE_STORAGE_OPTIONS", default={})},
    # Not the Manifest variant: that one fails every page until collectstatic
    # has run, and the embedded default serves straight from the app folders.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders too, so a server started without
# collectstatic (tests, runserver) still has its admin CSS and JS.
WHITENOISE_USE_FINDERS = True

# --- Security headers ---------------------------------------------------------
# A Content-Security-Policy on every page: scripts only from this origin (the
# templates have no inline script), no framing. Inline style attributes stay
# allowed: the admin and Swagger UI use them, and they cannot run code.
_DAILY_SOURCES = env.list("VOICE_CSP_DAILY_SOURCES", default=["https://*.daily.co", "wss://*.daily.co"])
_daily = _DAILY_SOURCES if env.str("VOICE_PROVIDER", default="local") == "daily" else []
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {
    "default-src": ["'self'"],
    "script-src": ["'self'", *[s for s in _daily if s.startswith("https:")]],  # daily-js loads its call machine
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'", *_daily],  # the websocket and the API are same-origin
    "worker-src": ["'self'", "blob:"],
    "media-src": ["'self'", "blob:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Production behind HTTPS: VOICE_HTTPS=true turns on what `manage.py check --deploy` asks for.
# VOICE_TRUST_X_FORWARDED_PROTO=true when a TLS-terminating proxy sets X-Forwarded-Proto.
VOICE_HTTPS = env.bool("VOICE_HTTPS", default=False)
if VOICE_HTTPS:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^metrics$"]  # Prometheus scrapes over the internal network
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
if env.bool("VOICE_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST framework ------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header turns anonymous requests into 401s.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # A JSON API: a form or multipart body is a 415, not silently read with other rules
    # (an empty form field would count as omitted).
    # Depth- and size-limited: a deeply nested body is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["voicesessions.api.parsers.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "voicesessions.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Per-user limits on the endpoints that create rooms and start bots (429 + Retry-After).
# DRF's rate syntax: "<count>/<second|minute|hour|day>".
VOICE_THROTTLE_RATES = {
    "voice_room": env.str("VOICE_THROTTLE_ROOM", default="30/minute"),
    "bot_join": env.str("VOICE_THROTTLE_JOIN", default="30/minute"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice session service",
    "DESCRIPTION": "Private voice rooms, Pipecat bot sessions and their events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from static files: works offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Voice sessions --------------------------------------------------------------
VOICE_PROVIDER = env.str("VOICE_PROVIDER", default="local")  # local | daily
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
VOICE_ROOM_TTL_DAYS = env.int("VOICE_ROOM_TTL_DAYS", default=30)  # a room expires (Daily's exp) this long after it is made
VOICE_TOKEN_TTL = env.int("VOICE_TOKEN_TTL", default=3600)  # seconds a room token lives
VOICE_DEFAULT_PERSISTENCE = env.int("VOICE_PERSISTENCE", default=300)
VOICE_DEFAULT_MAX_DURATION = env.int("VOICE_MAX_DURATION", default=3600)
# Initial values of the rollout switch when its row is first created; after
# that, admins change it in Django admin.
USE_PIPECAT_VOICE = env.bool("USE_PIPECAT_VOICE", default=True)
VOICE_ROLLOUT_PERCENTAGE = env.int("VOICE_ROLLOUT_PERCENTAGE", default=100)
VOICE_TEARDOWN_POLL_SECONDS = env.float("VOICE_TEARDOWN_POLL_SECONDS", default=1.0)
# How stored events reach websockets: "layer" pushes through the channel layer
# (needs Redis when bots run in other processes); "relay" has each server
# process tail the event table (the embedded default).
VOICE_EVENT_DELIVERY = env.str("VOICE_EVENT_DELIVERY", default="layer" if REDIS_URL else "relay")
VOICE_WS_REFRESH_SECONDS = env.float("VOICE_WS_REFRESH_SECONDS", default=5.0)  # layer mode: re-join + catch up
# Websocket messages from the browser: per socket VOICE_WS_BURST at once, then VOICE_WS_RATE a second;
# per user, across sockets and servers, VOICE_WS_USER_PER_MINUTE.
VOICE_WS_RATE = env.float("VOICE_WS_RATE", default=2.0)
VOICE_WS_BURST = env.int("VOICE_WS_BURST", default=10)
VOICE_WS_USER_PER_MINUTE = env.int("VOICE_WS_USER_PER_MINUTE", default=120)
# A typed message is refused while the bot has not answered the previous one, for at most this long.
VOICE_TYPED_ANSWER_WAIT = env.float("VOICE_TYPED_ANSWER_WAIT", default=30.0)
# A bot that took a session ends it if the user's audio has not connected within this many seconds.
VOICE_CONNECT_TIMEOUT = env.float("VOICE_CONNECT_TIMEOUT", default=30.0)
# Daily: how long a bot waits for Daily to admit it, and a teardown for the bot to leave the room.
VOICE_DAILY_JOIN_TIMEOUT = env.float("VOICE_DAILY_JOIN_TIMEOUT", default=20.0)
VOICE_BOT_LEAVE_WAIT = env.float("VOICE_BOT_LEAVE_WAIT", default=15.0)
VOICE_EVENT_RELAY_INTERVAL = env.float("VOICE_EVENT_RELAY_INTERVAL", default=0.05)
VOICE_WORKER_DEAD_AFTER = env.float("VOICE_WORKER_DEAD_AFTER", default=10.0)  # seconds without heartbeat
# Bot workers (manage.py runbotworker)
VOICE_WORKER_POOL_SIZE = env.int("VOICE_WORKER_POOL_SIZE", default=2)  # concurrent sessions per worker
VOICE_WORKER_MAX_SESSIONS = env.int("VOICE_WORKER_MAX_SESSIONS", default=0)  # recycle after N; 0 = never
VOICE_WORKER_IDLE_TIMEOUT = env.float("VOICE_WORKER_IDLE_TIMEOUT", default=0)  # exit when idle N s; 0 = never
VOICE_WORKER_HEARTBEAT_SECONDS = env.float("VOICE_WORKER_HEARTBEAT_SECONDS", default=2.0)
VOICE_WORKER_POLL_SECONDS = env.float("VOICE_WORKER_POLL_SECONDS", default=0.05)
# The Redis queue wakes a worker when a job is published; it looks again at least this often
# (a dead worker's pending entries are taken over by polling).
VOICE_WORKER_JOB_WAIT_SECONDS = env.float("VOICE_WORKER_JOB_WAIT_SECONDS", default=1.0)
# Admission control (issue 14): a worker claims a job only while its CPU use over the last
# VOICE_WORKER_LOAD_WINDOW seconds, per usable core, is under VOICE_WORKER_MAX_LOAD; a join
# that no live worker has room for is refused with 503 no_capacity and this Retry-After.
VOICE_WORKER_MAX_LOAD = env.float("VOICE_WORKER_MAX_LOAD", default=0.9)
VOICE_WORKER_LOAD_WINDOW = env.float("VOICE_WORKER_LOAD_WINDOW", default=5.0)
VOICE_NO_CAPACITY_RETRY_AFTER = env.int("VOICE_NO_CAPACITY_RETRY_AFTER", default=5)
# How many nice steps a warm worker's threads (the event loop with every session's audio) run
# below its smart-turn threads, so that a turn's verdict does not queue behind audio on a busy
# core (voicebot/sharedmodels.py prioritise_turn_model; 0 = the same priority). Unset: 10 when
# every model is hosted, 0 when the worker runs models itself (its audio must not wait for them).
VOICE_WORKER_LOOP_NICE = env.int("VOICE_WORKER_LOOP_NICE", default=None)
VOICE_WORKER_ADVERTISE_HOST = env.str("VOICE_WORKER_ADVERTISE_HOST", default="")  # host servers dial
VOICE_WEBRTC_HOSTS = env.list("VOICE_WEBRTC_HOSTS", default=["127.0.0.1"])  # ICE host candidates
VOICE_OFFER_WAIT_SECONDS = env.float("VOICE_OFFER_WAIT_SECONDS", default=20.0)  # wait for a worker to claim
VOICE_VAD_STOP_SECS = env.float("VOICE_VAD_STOP_SECS", default=0.2)  # Pipecat's recommended value
# Once a worker's load reaches VOICE_INPUT_LONG_FRAMES_LOAD (of its cores), the user's audio reaches
# the pipeline in frames of VOICE_INPUT_FRAME_MS (a multiple of WebRTC's 20 ms packets) instead of
# 20 ms: each frame is a trip through the transport's resampler and every processor that reads it,
# and a longer one costs ~20 ms of voice-to-voice (voicebot/mediapath.py InputFrames; issue 14,
# docs/benchmarks.md). 20 ms again under 80% of that load. VOICE_INPUT_FRAME_MS=20: never. Unset:
# 0.5 when every model is hosted, never when the worker runs models itself (voicebot/worker.py).
VOICE_INPUT_FRAME_MS = env.int("VOICE_INPUT_FRAME_MS", default=40)
VOICE_INPUT_LONG_FRAMES_LOAD = env.float("VOICE_INPUT_LONG_FRAMES_LOAD", default=None)
# libopus's complexity (0-10) for the bot's voice, coded as mono (voicebot/mediapath.py); aiortc's is 10.
VOICE_OPUS_COMPLEXITY = env.int("VOICE_OPUS_COMPLEXITY", default=5)
VOICE_TURN_INCOMPLETE_WAIT_SECS = env.float("VOICE_TURN_INCOMPLETE_WAIT_SECS", default=1.0)
# A final transcript ending with "?" ends the user's turn at once (voicebot/turnend.py).
VOICE_TURN_QUESTION_ENDS = env.bool("VOICE_TURN_QUESTION_ENDS", default=True)
# A statement the turn model judged unfinished is answered while its silence runs out; the
# answer is held and spoken when the turn ends, dropped if the user goes on (voicebot/turnend.py).
VOICE_TURN_SPECULATE = env.bool("VOICE_TURN_SPECULATE", default=True)
# The turn model's verdict is reached beside the transcript, not in front of it: a final that
# comes first ends a question's turn (or starts a statement's answer) at once (voicebot/turnend.py).
VOICE_TURN_JUDGE_ASIDE = env.bool("VOICE_TURN_JUDGE_ASIDE", default=True)
VOICE_VAD_MIN_VOLUME = env.float("VOICE_VAD_MIN_VOLUME", default=0.4)
# The VAD model is not run on the user's silence (the last 400 ms below BS.1770's absolute gate,
# which Pipecat calls quiet whatever the model says): voicebot/sharedmodels.py, issue 14.
VOICE_VAD_SILENCE_GATE = env.bool("VOICE_VAD_SILENCE_GATE", default=True)
# Bot models. "local": offline, from pip-shipped model files; "openai": any
# OpenAI-compatible API (VOICE_LLM_BASE_URL, VOICE_LLM_API_KEY, VOICE_LLM_MODEL).
VOICE_LLM = env.str("VOICE_LLM", default="local")
# Which OpenAI-compatible server a hosted LLM is, so Pipecat's own class for it is used:
# "openai" (OpenAI, vLLM, llama.cpp's server, gateways), "ollama", "groq" or "azure"
# (Azure OpenAI: VOICE_LLM_BASE_URL is the resource's endpoint; one ending in /openai/v1 is
# Azure's v1 API, any other the dated one at VOICE_LLM_API_VERSION).
VOICE_LLM_FLAVOR = env.str("VOICE_LLM_FLAVOR", default="openai")
VOICE_LLM_API_VERSION = env.str("VOICE_LLM_API_VERSION", default="2025-04-01-preview")  # Pipecat's dated default
_LLM_URLS = {"ollama": "http://localhost:11434/v1", "groq": "https://api.groq.com/openai/v1", "azure": ""}
VOICE_LLM_BASE_URL = env.str("VOICE_LLM_BASE_URL", default=_LLM_URLS.get(VOICE_LLM_FLAVOR, "https://api.openai.com/v1"))
VOICE_LLM_API_KEY = env.str("VOICE_LLM_API_KEY", default="")  # may be empty for a keyless server (not OpenAI's)
# OpenAI's OpenAI-Organization / OpenAI-Project headers, and any other headers a server or
# gateway wants, as a JSON object: VOICE_LLM_HEADERS='{"X-Gateway-Team": "voice"}'.
VOICE_LLM_ORGANIZATION = env.str("VOICE_LLM_ORGANIZATION", default="")
VOICE_LLM_PROJECT = env.str("VOICE_LLM_PROJECT", default="")
VOICE_LLM_HEADERS = env.json("VOICE_LLM_HEADERS", default={})
# How a hosted model reaches the tools: "native" (the tool definitions are sent; a server
# that refuses them, as Ollama does for a model without tool support, falls back to the
# router by itself) or "router" (none sent: the notes router turns notes requests into calls).
VOICE_LLM_TOOLS = env.str("VOICE_LLM_TOOLS", default="native")
# Ask a hosted server for token usage in the stream (stream_options); off for a server that
# refuses the parameter (usage is then not reported).
VOICE_LLM_STREAM_USAGE = env.bool("VOICE_LLM_STREAM_USAGE", default=True)
VOICE_LLM_MODEL = env.str("VOICE_LLM_MODEL", default="gpt-4.1-mini")
VOICE_LLM_MODEL_PATH = env.str("VOICE_LLM_MODEL_PATH", default="")  # a GGUF instead of the shipped Qwen2.5-Coder-1.5B
# Every model: the prompt holds the system prompt plus the latest turns within this many
# tokens, and a spoken answer is at most this many tokens, cut at its last full sentence.
# Hosted model APIs in a live call: a request that gets no answer for VOICE_HOSTED_TIMEOUT
# seconds fails (the user is told, and the next turn tries again), and failed requests are
# retried this many times (0: a 429 is reported at once instead of waiting out Retry-After).
VOICE_HOSTED_TIMEOUT = env.float("VOICE_HOSTED_TIMEOUT", default=10.0)

# Webhooks (issue 13): signed JSON events to an assistant's server URL, or to this global one,
# delivered at least once from the outbox by the bot workers, with backoff between attempts.
VOICE_WEBHOOK_URL = env.str("VOICE_WEBHOOK_URL", default="")
VOICE_WEBHOOK_SECRET = env.str("VOICE_WEBHOOK_SECRET", default="")  # signs the global URL's events
VOICE_WEBHOOK_TIMEOUT = env.float("VOICE_WEBHOOK_TIMEOUT", default=10.0)  # seconds per attempt
VOICE_WEBHOOK_MAX_ATTEMPTS = env.int("VOICE_WEBHOOK_MAX_ATTEMPTS", default=12)  # then failed (resend in admin)
VOICE_WEBHOOK_RETRY_BASE = env.float("VOICE_WEBHOOK_RETRY_BASE", default=2.0)  # seconds; doubled each attempt
VOICE_WEBHOOK_RETRY_MAX = env.float("VOICE_WEBHOOK_RETRY_MAX", default=3600.0)  # the longest wait between attempts
VOICE_WEBHOOK_LEASE_SECONDS = env.float("VOICE_WEBHOOK_LEASE_SECONDS", default=120.0)  # a crashed deliverer's hold
VOICE_WEBHOOK_POLL_SECONDS = env.float("VOICE_WEBHOOK_POLL_SECONDS", default=1.0)
VOICE_WEBHOOK_SUMMARY_TIMEOUT = env.float("VOICE_WEBHOOK_SUMMARY_TIMEOUT", default=60.0)  # the report's summary
VOICE_HOSTED_CONNECT_TIMEOUT = env.float("VOICE_HOSTED_CONNECT_TIMEOUT", default=3.0)
VOICE_HOSTED_RETRIES = env.int("VOICE_HOSTED_RETRIES", default=0)
VOICE_LLM_HISTORY_TOKENS = env.int("VOICE_LLM_HISTORY_TOKENS", default=1200)
VOICE_LLM_REPLY_TOKENS = env.int("VOICE_LLM_REPLY_TOKENS", default=100)
# A model given the tools may generate this many tokens, so a tool call's arguments fit
# (the spoken answer still stops at VOICE_LLM_REPLY_TOKENS, on its last whole sentence).
VOICE_LLM_TOOL_TOKENS = env.int("VOICE_LLM_TOOL_TOKENS", default=400)
# A hosted model that reasons before it answers (OpenAI's o-series and gpt-5, gpt-oss;
# voicebot/services/llm.py REASONING_MODEL): its reasoning counts against the completion cap,
# so every request gets this many tokens more, and asks for this effort ("" sends none; OpenAI's
# levels are none/minimal, low, medium, high; a voice turn cannot wait for much reasoning).
VOICE_LLM_REASONING_TOKENS = env.int("VOICE_LLM_REASONING_TOKENS", default=1024)
VOICE_LLM_REASONING_EFFORT = env.str("VOICE_LLM_REASONING_EFFORT", default="low")
# llama.cpp's threads for the local model; 0 = as many as the machine has cores, at most 2.
VOICE_LLM_THREADS = env.int("VOICE_LLM_THREADS", default=0)
# The packaged local Whisper: "base" (multilingual, asked for English) or "tiny.en" (faster,
# more words wrong: docs/benchmarks.md). VOICE_STT_MODEL_PATH, when set, is used instead.
VOICE_STT_LOCAL_MODEL = env.str("VOICE_STT_LOCAL_MODEL", default="base")
VOICE_STT_MODEL_PATH = env.str("VOICE_STT_MODEL_PATH", default="")  # a CTranslate2 Whisper dir
# Local Whisper decodes the utterance while the user speaks: interim transcripts on the page,
# and the final one ready when the speech ends. 0: decode once, after the end of speech.
VOICE_STT_INTERIM = env.bool("VOICE_STT_INTERIM", default=True)
# Seconds of quiet at the end of the user's speech after which local Whisper starts the decode
# that becomes the final, before the VAD reports the stop (0: decode at the stop).
VOICE_STT_QUIET_SECS = env.float("VOICE_STT_QUIET_SECS", default=0.1)
# Local Whisper's temperature fallback: an utterance whose decode looks unsure (low
# log-probability, or repeating itself) is decoded once more at temperature 0.5, five sampled
# candidates (stt.FALLBACK_TEMPERATURES; faster-whisper's own ladder of five more took 1-4 s of a
# turn on the conversation bench's garbled utterances). 0: the first decode stands.
VOICE_STT_FALLBACK = env.bool("VOICE_STT_FALLBACK", default=True)
# The transcriber is told the assistant's name (the session's persona): local Whisper as
# faster-whisper's hotwords, OpenAI's transcription APIs as their prompt, Deepgram as a keyterm or
# keyword. A name it has never heard is otherwise taken for common words ("Goodbye Pearl." heard
# as "Don't buy furl!"). 0: no hint.
VOICE_STT_NAME_HINT = env.bool("VOICE_STT_NAME_HINT", default=True)
# The local LLM reads the conversation and the user's words so far into its prompt cache while
# the user speaks, so a turn's request reads only its last words (voicebot/prefill.py).
VOICE_LLM_PREFILL = env.bool("VOICE_LLM_PREFILL", default=True)
# Encode only the part of Whisper's 30 s window that the audio fills (stt.WindowedWhisperModel):
# about 3x faster decodes on 2 cores, the same or better WER over many sentences, though a
# single utterance may come out differently. On by default since 2026-12-04: bench_bot's
# voice-to-voice p50 2.44 -> 1.86 s (docs/benchmarks.md). 0: the full 30 s window.
VOICE_STT_WINDOW = env.bool("VOICE_STT_WINDOW", default=True)
# Seconds a user turn waits for its transcript before Pipecat gives up on it and answers the
# empty turn. Pipecat's 5 s stays the default: 15 s is what a busy 2-core machine needs for a
# late first transcript, but it was not yet measured against barge-in (see docs/benchmarks.md).
VOICE_USER_TURN_TIMEOUT = env.float("VOICE_USER_TURN_TIMEOUT", default=5.0)
# Run each local model once when a worker starts, so the first turn is as fast as the rest.
VOICE_WARM_MODELS = env.bool("VOICE_WARM_MODELS", default=True)
# Hosted speech: VOICE_STT = "local" | "openai" | "openai-realtime" | "deepgram" (the last two
# streaming, with interim transcripts);
# VOICE_TTS = "local" | "openai" | "cartesia" | "elevenlabs" (both streaming over websockets).
# The URL, model and voice defaults follow the provider chosen.
VOICE_STT = env.str("VOICE_STT", default="local")
_STT_DEFAULTS = {"deepgram": ("https://api.deepgram.com", "nova-3-general"),
                 "openai-realtime": ("wss://api.openai.com/v1/realtime", "gpt-realtime-whisper")}
_stt_url, _stt_model = _STT_DEFAULTS.get(VOICE_STT, ("https://api.openai.com/v1", "gpt-4o-transcribe"))
VOICE_STT_BASE_URL = env.str("VOICE_STT_BASE_URL", default=_stt_url)
VOICE_STT_API_KEY = env.str("VOICE_STT_API_KEY", default="")
VOICE_STT_MODEL = env.str("VOICE_STT_MODEL", default=_stt_model)
VOICE_TTS = env.str("VOICE_TTS", default="local")
# Cartesia's and ElevenLabs' default voices are ones their own docs and Pipecat's examples use.
_TTS_DEFAULTS = {"cartesia": ("wss://api.cartesia.ai/tts/websocket", "sonic-3.6",
                              "71a7ad14-091c-4e8e-a314-022ece01c121"),
                 "elevenlabs": ("wss://api.elevenlabs.io", "eleven_flash_v2_5", "21m00Tcm4TlvDq8ikWAM")}
_tts_url, _tts_model, _tts_voice = _TTS_DEFAULTS.get(VOICE_TTS, ("https://api.openai.com/v1", "gpt-4o-mini-tts",
                                                                 "alloy"))
VOICE_TTS_BASE_URL = env.str("VOICE_TTS_BASE_URL", default=_tts_url)
VOICE_TTS_API_KEY = env.str("VOICE_TTS_API_KEY", default="")
VOICE_TTS_MODEL = env.str("VOICE_TTS_MODEL", default=_tts_model)
VOICE_TTS_VOICE = env.str("VOICE_TTS_VOICE", default=_tts_voice)  # when the assistant has no voice the server takes
# The voice ids the hosted TTS server takes (an assistant's other voice is replaced by
# VOICE_TTS_VOICE, and logged); empty: OpenAI's list for api.openai.com, else any id.
VOICE_TTS_VOICES = env.list("VOICE_TTS_VOICES", default=[])
VOICE_BOT_QUEUE = env.str("VOICE_BOT_QUEUE", default="voicesessions.redis_queue.RedisStreamBotJobQueue"
                          if REDIS_URL else "voicesessions.queue.DatabaseBotJobQueue")

# /metrics: a Bearer token if VOICE_METRICS_TOKEN is set, else only these addresses may scrape.
VOICE_METRICS_TOKEN = env.str("VOICE_METRICS_TOKEN", default="")
VOICE_METRICS_ALLOWED_IPS = env.list("VOICE_METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])

DAILY_API_KEY = env.str("DAILY_API_KEY", default="")
DAILY_API_URL = env.str("DAILY_API_URL", default="https://api.daily.co/v1")
DAILY_MAX_RETRIES = env.int("DAILY_MAX_RETRIES", default=3)
DAILY_HTTP_TIMEOUT = env.float("DAILY_HTTP_TIMEOUT", default=10.0)

# --- Logging ---------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "plain" (one readable line) or "json" (one JSON object per line, with the line's
# [Prefix] as `component` and userId/roomUrl/sessionId/latencyMs when known).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
# Pipecat logs through loguru; the bot worker routes it into this config at this level.
# Not DEBUG by default: Pipecat's DEBUG lines carry prompts and tool arguments (user content).
VOICE_PIPECAT_LOG_LEVEL = env.str("VOICE_PIPECAT_LOG_LEVEL", default="INFO")
_handler = {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "voiceproject.logformat.PlainFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "json": {"()": "voiceproject.logformat.VoiceJsonFormatter"}},
    "handlers": {"console": _handler},
    # Everything else (Django, Daphne, aiortc, Pipecat) goes through the same handler and format.
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # propagate=False: Daphne adds a root handler too, and every line would print twice.
        "voicesessions": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "voicebot": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "assistants": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "pipecat": {"handlers": ["console"], "level": VOICE_PIPECAT_LOG_LEVEL, "propagate": False},
        # Whisper's own skips of audio it takes for silence, with the bot's models' DEBUG; its INFO
        # is a line per decode (several per utterance while the user speaks), so WARNING otherwise.
        "faster_whisper": {"handlers": ["console"], "propagate": False,
                           "level": "DEBUG" if VOICE_PIPECAT_LOG_LEVEL.upper() == "DEBUG" else "WARNING"},
        # One line per HTTP request and websocket (voiceproject/accesslog.py); VOICE_ACCESS_LOG=false: none.
        "voiceproject.access": {"handlers": ["console"], "propagate": False,
                                "level": "INFO" if env.bool("VOICE_ACCESS_LOG", default=True) else "WARNING"},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Never DEBUG: it prints SQL, including the lookup of an API token.
        "django.db.backends": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
