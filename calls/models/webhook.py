"""Webhook endpoints and their durable outbox: one delivery per (endpoint, call event),
queued in the transaction that records the event (calls.webhooks.outbox), and every
attempt to send it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from calls.models.call import Call, CallEvent


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=2000, help_text="http(s) URL that receives POSTed events")
    # Kept in clear: it signs every request (a hash could not). Shown once on creation.
    secret = models.CharField(max_length=100, editable=False)
    event_filter = models.TextField(
        blank=True,
        help_text=(
            "Event names or prefixes, one per line or comma separated: `call.ended`, "
            "`call.*`, `queue.*`. Empty: every call event."
        ),
    )
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.description or self.url


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up after the retry window


class WebhookDelivery(models.Model):
    """One event for one endpoint. Its `message_id` is the `webhook-id` of every attempt
    (receivers dedupe on it); `call` keeps per-call order without a join."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(CallEvent, on_delete=models.PROTECT, related_name="+")
    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="+")
    message_id = models.CharField(max_length=64, unique=True, editable=False)
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set while a sender has it in flight; a sender that died leaves it to expire.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Failures after this give the delivery up (CALLBRIDGE_WEBHOOK_RETRY_HOURS from its
    # queueing or from its last redelivery).
    retry_until = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="one_delivery_per_event")
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhook_due"),
            models.Index(fields=["endpoint", "call", "state"], name="webhook_call_order"),
        ]

    def __str__(self) -> str:
        return self.message_id

    @staticmethod
    def new_message_id() -> str:
        return f"msg_{uuid.uuid4().hex}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.status_code or self.error[:40]}"
