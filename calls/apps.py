from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls.api import schema  # noqa: F401  (registers OpenAPI extensions)
        from calls.events import publish_call_event, publish_operator_status
        from calls.model_signals import call_event_recorded, operator_status_changed

        call_event_recorded.connect(publish_call_event, dispatch_uid="calls.events.publish")
        operator_status_changed.connect(
            publish_operator_status, dispatch_uid="calls.events.operator_status"
        )

        from calls import consult, hold, revocation, supervision, transfer

        revocation.connect_receivers()
        hold.connect_receivers()
        transfer.connect_receivers()
        consult.connect_receivers()
        supervision.connect_receivers()

        from calls import metrics

        call_event_recorded.connect(metrics.on_call_event, dispatch_uid="calls.metrics")

        from calls.routing import triggers

        triggers.connect()

        from django.db.models.signals import post_save

        from calls import callbacks
        from calls.model_signals import credentials_revoked
        from calls.models import CallEvent

        # A call back's answer or end settles its request in the call's own transaction.
        post_save.connect(callbacks.on_call_event_saved, sender=CallEvent, dispatch_uid="callbacks")
        # Webhook deliveries are queued in the transaction that records the event.
        from calls.webhooks import outbox

        post_save.connect(outbox.on_call_event_saved, sender=CallEvent, dispatch_uid="webhooks")
        credentials_revoked.connect(callbacks.on_credentials_revoked, dispatch_uid="callbacks")
