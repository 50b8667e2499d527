"""ASGI entry point, served by Daphne: HTTP to Django, /ws/voice/ to Channels."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceproject.settings")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from voiceproject.accesslog import AccessLogMiddleware  # noqa: E402
from voicesessions.auth import BrowserOriginValidator, VoiceAuthMiddlewareStack  # noqa: E402
from voicesessions.routing import websocket_urlpatterns  # noqa: E402

application = AccessLogMiddleware(ProtocolTypeRouter({
    "http": django_asgi_app,
    # Refuses websocket handshakes whose Origin is not an allowed host.
    "websocket": BrowserOriginValidator(VoiceAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
}))
