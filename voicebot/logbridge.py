"""Route Pipecat's loguru output into Python logging.

Pipecat logs through loguru straight to stderr at DEBUG. Sending it through
the `logging` config instead gives the worker one format (plain or JSON, see
voiceproject/logformat.py) and one level knob (VOICE_PIPECAT_LOG_LEVEL). This
is the propagation recipe from loguru's documentation.
"""
from __future__ import annotations

import logging

from django.conf import settings


class _PropagateHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # Pipecat logs a provider's error text as it came (OpenAI's 429 names the
        # organisation): masked here like our own lines (provider_errors.redact).
        from .provider_errors import redact

        record.msg, record.args = redact(record.getMessage()), None
        logging.getLogger(record.name).handle(record)


def route_loguru_to_logging() -> None:
    from loguru import logger

    logger.remove()  # loguru's own DEBUG handler on stderr
    logger.add(_PropagateHandler(), format="{message}", level=settings.VOICE_PIPECAT_LOG_LEVEL)
