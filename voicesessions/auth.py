"""Websocket authentication by DRF token, beside Django's session cookie.

Browsers send the session cookie (Channels' AuthMiddlewareStack); other
clients (the bench, scripts) send `Authorization: Token <key>`. Channels
ships no token middleware, hence these few lines.
"""
from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("token "):
            user = await _user_for_token(auth[6:].strip())
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)


def VoiceAuthMiddlewareStack(inner: Any) -> Any:
    """Session auth first (sets scope['user']), then a token may set it instead."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))


class BrowserOriginValidator(OriginValidator):
    """Channels' allowed-hosts origin check, except that a handshake without an
    Origin header is let through.

    Browsers always send Origin on websockets, so cross-site pages are still
    refused; scripts and servers send none and authenticate with a token.
    """

    def __init__(self, application: Any) -> None:
        from django.conf import settings

        hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        super().__init__(application, hosts)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)
