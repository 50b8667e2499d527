"""URLs: admin, the REST API, its OpenAPI schema and docs."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from assistants import views as assistant_views
from assistants.api import VoiceConfigView
from voicesessions.metrics import metrics_view

urlpatterns = [
    path("", assistant_views.assistant_list, name="home"),
    path("assistants/<slug:slug>/", assistant_views.assistant_page, name="assistant"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("api/voice/config", VoiceConfigView.as_view(), name="voice-config"),
    path("api/", include("voicesessions.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),  # no inline script
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

# JSON, not HTML, for API clients that hit a wrong URL or a server fault.
handler400 = "voicesessions.api.errors.bad_request_view"
handler404 = "voicesessions.api.errors.not_found_view"
handler500 = "voicesessions.api.errors.server_error_view"
