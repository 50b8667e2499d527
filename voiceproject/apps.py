"""The project's admin: Django's, plus the operations dashboard."""
from django.contrib.admin.apps import AdminConfig


class VoiceAdminConfig(AdminConfig):
    default_site = "voiceproject.admin_site.VoiceAdminSite"
