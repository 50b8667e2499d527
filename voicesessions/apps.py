from django.apps import AppConfig


class VoicesessionsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'voicesessions'
