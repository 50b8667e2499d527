"""Websocket authentication by DRF token, beside Django's session cookie.

Browsers send the session cookie (Channels' AuthMiddlewareStack); other
clients (the bench, scripts) send `Authorization: Token <key>`. Channels
ships no token middleware, hence these few lines.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator, WebsocketDenier


def user_for_token(key: str) -> Any:
    """The active user a DRF token belongs to, or None (the websocket and the WebRTC offer use it)."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


_user_for_token = database_sync_to_async(user_for_token)


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


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or base URL, default ports filled in."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    return parsed.scheme, parsed.hostname.lower(), port


class BrowserOriginValidator(OriginValidator):
    """Refuse websocket handshakes from another origin, compared by scheme, host and port.

    Channels' own check compares hosts only, so a page on another port of the
    same host (http://127.0.0.1:9999) was let in. Allowed: the page's own
    origin (the Host the socket was opened to, when ALLOWED_HOSTS admits it),
    PUBLIC_BASE_URL and CSRF_TRUSTED_ORIGINS. A handshake without an Origin
    header is let through: browsers always send one, while scripts and
    servers send none and authenticate with a token.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

    @staticmethod
    def allowed(scope: dict[str, Any]) -> bool:
        from django.conf import settings
        from django.http.request import split_domain_port, validate_host

        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            return True
        presented = _origin(origin.decode("latin-1"))
        if presented is None:
            return False
        trusted = {_origin(url) for url in [settings.PUBLIC_BASE_URL, *settings.CSRF_TRUSTED_ORIGINS]}
        host = headers.get(b"host", b"").decode("latin-1")
        if host and validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
            scheme = "https" if scope.get("scheme") == "wss" else "http"
            trusted.add(_origin(f"{scheme}://{host}"))
        return presented in trusted
