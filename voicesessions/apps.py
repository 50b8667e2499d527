from django.apps import AppConfig


class VoicesessionsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'voicesessions'

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the receivers
