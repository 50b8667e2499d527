"""Settings for the benchmark server: the app's own settings plus error logging.

Everything comes from `voiceproject.settings` unchanged (the bench pins the
relevant env vars: SQLite in a temporary VOICE_VAR_DIR, in-memory channel
layer, local room provider, DEBUG off). The one addition: with DEBUG off,
Django's default logging drops the tracebacks of 500 responses, so the bench
sends `django.request` / `django.channels` errors to the console, where they
land in the server log the bench scans for errors.
"""
from voiceproject.settings import *  # noqa: F401,F403
from voiceproject.settings import LOGGING

LOGGING = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.channels.server": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "daphne": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
