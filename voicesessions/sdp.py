"""Checks on a WebRTC offer's SDP before it reaches a bot.

A bad offer used to reach the worker, which dropped the user's live peer
connection to answer it. aiortc's own parser (the one the worker uses) reads
the offer here; an offer without an audio m-line, ICE credentials or a DTLS
fingerprint could never carry the user's voice, so it is refused up front.
"""
from __future__ import annotations

from aiortc.sdp import SessionDescription

MAX_SDP_CHARS = 100_000


class InvalidOffer(ValueError):
    """The SDP cannot be a WebRTC audio offer; the message says why."""


def check_offer(sdp: str) -> SessionDescription:
    """Parse the offer and return it, or raise InvalidOffer."""
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise InvalidOffer("not an SDP session description (it must start with 'v=0')")
    if len(sdp) > MAX_SDP_CHARS:
        raise InvalidOffer(f"longer than {MAX_SDP_CHARS} characters")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises ValueError, IndexError, KeyError... on malformed lines
        raise InvalidOffer(f"the SDP does not parse ({type(exc).__name__})") from exc
    audio = [media for media in description.media if media.kind == "audio"]
    if not audio:
        raise InvalidOffer("the offer has no audio m-line")
    media = audio[0]
    if not (media.ice.usernameFragment and media.ice.password):
        raise InvalidOffer("the audio m-line has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    if not media.dtls or not media.dtls.fingerprints:
        raise InvalidOffer("the audio m-line has no DTLS fingerprint (a=fingerprint)")
    return description
