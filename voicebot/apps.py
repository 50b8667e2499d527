from django.apps import AppConfig


class VoicebotConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'voicebot'
