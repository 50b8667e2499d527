"""Room tokens for the `local` provider.

Signed with Django's own signing (HMAC over SECRET_KEY), so no token table is
needed and any server process can verify a token another one issued.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core import signing
from django.utils import timezone

SALT = "voicesessions.room-token"


class InvalidRoomToken(Exception):
    """The token is forged, expired or for another room."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@dataclass(frozen=True)
class RoomTokenClaims:
    room_name: str
    user_id: str
    user_name: str
    is_owner: bool
    expires_at: dt.datetime
    generation: int  # the room's incarnation the token was issued for (0: issued before generations)


def issue_room_token(room_name: str, *, user_id: str, user_name: str, expires_at: dt.datetime,
                     is_owner: bool = False, generation: int = 1) -> str:
    """A token that admits `user_id` to `room_name` (this incarnation of it) until `expires_at`."""
    claims = {"r": room_name, "u": user_id, "n": user_name, "o": is_owner,
              "exp": int(expires_at.timestamp()), "g": generation}
    return signing.dumps(claims, salt=SALT, compress=True)


def verify_room_token(token: str, room_name: str | None) -> RoomTokenClaims:
    """Check signature, expiry and (unless None) room; return the claims or raise InvalidRoomToken."""
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise InvalidRoomToken("bad token signature") from exc
    expires_at = dt.datetime.fromtimestamp(claims["exp"], tz=dt.timezone.utc)
    if expires_at <= timezone.now():
        raise InvalidRoomToken("token expired", expired=True)
    if room_name is not None and claims["r"] != room_name:
        raise InvalidRoomToken("token is for another room")
    return RoomTokenClaims(room_name=claims["r"], user_id=claims["u"], user_name=claims["n"],
                           is_owner=bool(claims["o"]), expires_at=expires_at, generation=int(claims.get("g", 0)))
