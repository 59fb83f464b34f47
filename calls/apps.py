from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls.api import schema  # noqa: F401  (registers OpenAPI extensions)
