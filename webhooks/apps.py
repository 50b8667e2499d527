from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Signed JSON events to each assistant's server (or a global one), from a durable outbox."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"

    def ready(self) -> None:
        from . import outbox  # noqa: F401 - connects the receiver that fills the outbox
