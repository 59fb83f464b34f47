from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls.api import schema  # noqa: F401  (registers OpenAPI extensions)
        from calls.events import publish_call_event
        from calls.model_signals import call_event_recorded

        call_event_recorded.connect(publish_call_event, dispatch_uid="calls.events.publish")

        from calls import revocation

        revocation.connect_receivers()

        from calls.routing import triggers

        triggers.connect()
