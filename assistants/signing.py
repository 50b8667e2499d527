"""HMAC signatures on the requests this service sends out: custom tool calls and webhooks.

The header is `X-Voice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
the scheme Stripe's and Svix's webhooks use: the timestamp is signed with the body, so
a captured request cannot be replayed later, and a receiver checks both (`verify`,
which README shows a receiver how to write in a few lines of any language).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "X-Voice-Signature"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh per-tool or per-webhook signing secret."""
    return "whsec_" + secrets.token_hex(24)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The X-Voice-Signature value for `body`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """Whether `header` is a valid signature of `body` made within `tolerance` seconds."""
    parts = dict(item.split("=", 1) for item in (header or "").split(",") if "=" in item)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, timestamp=t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
