from django.urls import path

from . import views, webrtc

urlpatterns = [
    path("voice/room", views.VoiceRoomView.as_view(), name="voice-room"),
    path("voice/webrtc/offer", webrtc.webrtc_offer, name="voice-webrtc-offer"),
    path("bot/join", views.BotJoinView.as_view(), name="bot-join"),
    path("voice/sessions", views.SessionListView.as_view(), name="voice-sessions"),
    path("voice/sessions/<uuid:session_id>", views.SessionDetailView.as_view(), name="voice-session"),
    path("voice/sessions/<uuid:session_id>/events", views.SessionEventsView.as_view(), name="voice-session-events"),
    path("voice/sessions/<uuid:session_id>/pause", views.SessionPauseView.as_view(), name="voice-session-pause"),
    path("voice/sessions/<uuid:session_id>/resume", views.SessionResumeView.as_view(), name="voice-session-resume"),
]
