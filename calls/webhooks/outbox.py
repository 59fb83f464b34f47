"""The webhook outbox: deliveries queued with the call event that causes them, claimed by
senders in per-call order, each attempt recorded, retried with backoff, given up late.

`on_call_event_saved` is a post_save receiver of CallEvent (connected in calls.apps): it
runs inside the transaction that records the event (Call.record_event), so an event and
its deliveries commit together or not at all — nothing is lost across a restart.

Claiming is a compare-and-set on the delivery's lease (one sender wins even on SQLite,
where SELECT … FOR UPDATE is a no-op; on PostgreSQL rows another sender holds are
skipped). A delivery is claimable only when no earlier delivery of the same call to the
same endpoint is still pending (in flight or waiting for a retry): per-call order.
A sender that dies mid-request leaves its lease to expire; the delivery is sent again
with the same `webhook-id` (at least once: receivers dedupe on it).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from calls.model_signals import webhooks_queued
from calls.models import (
    CallEvent,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from calls.webhooks import signing

ERROR_EXCERPT_CHARS = 300


def on_call_event_saved(sender: Any, instance: CallEvent, created: bool, **kwargs: Any) -> None:
    if not created or kwargs.get("raw"):
        return
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(enabled=True).only("pk", "event_filter")
        if signing.matches(_filter_of(endpoint), instance.name)
    ]
    if not endpoints:
        return
    retry_until = instance.created_at + retry_window()
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event=instance,
            call_id=instance.call_id,
            message_id=WebhookDelivery.new_message_id(),
            created_at=instance.created_at,
            next_attempt_at=instance.created_at,
            retry_until=retry_until,
        )
        for endpoint in endpoints
    )
    transaction.on_commit(lambda: webhooks_queued.send(sender=WebhookDelivery))


def retry_window() -> timedelta:
    return timedelta(hours=settings.CALLBRIDGE_WEBHOOK_RETRY_HOURS)


def _filter_of(endpoint: WebhookEndpoint) -> list[str]:
    try:
        return signing.parse_filter(endpoint.event_filter)
    except ValueError:
        return ["-"]  # saved past the admin's validation: matches nothing rather than all


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why an endpoint URL is refused (None: accepted). Host names are checked again,
    resolved, before every request (calls.webhooks.sender)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("http", "https"):
        return "Only http and https URLs can receive webhooks."
    if not parts.hostname:
        return "The URL needs a host."
    if parts.username or parts.password:
        return "Credentials in the URL are not allowed (they would be logged); use the path."
    if port == 0:
        return "Not a valid port."
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        host = "127.0.0.1"
    try:
        allowed = signing.address_allowed(host, allow_private)
    except ValueError:
        return None  # a name: resolved at send time
    if not allowed:
        return (
            "Private, loopback and link-local addresses are refused "
            "(CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE=true allows them)."
        )
    return None


def payload(event: CallEvent) -> str:
    """The body: Standard Webhooks' `type`, `timestamp`, `data` (the event, immutable, so
    every attempt sends the same bytes)."""
    return json.dumps(
        {
            "type": event.name,
            "timestamp": event.created_at.isoformat(),
            "data": {
                "callID": str(event.call_id),
                "eventID": event.pk,
                "legID": str(event.leg_id) if event.leg_id else None,
                "actor": event.actor,
                "actorRole": event.actor_role,
                "details": event.data,
            },
        },
        separators=(",", ":"),
        sort_keys=True,
    )


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    url: str
    secret: str
    message_id: str
    body: str


def _unblocked() -> QuerySet[WebhookDelivery]:
    """Pending deliveries with no earlier pending one of the same call to the same endpoint."""
    earlier_pending = WebhookDelivery.objects.filter(
        endpoint=OuterRef("endpoint"),
        call=OuterRef("call"),
        state=DeliveryState.PENDING,
        pk__lt=OuterRef("pk"),
    )
    return WebhookDelivery.objects.filter(state=DeliveryState.PENDING).filter(
        ~Exists(earlier_pending)
    )


def _due(now: datetime) -> QuerySet[WebhookDelivery]:
    return (
        _unblocked()
        .filter(next_attempt_at__lte=now, endpoint__enabled=True)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        .order_by("pk")
    )


def claim(now: datetime, limit: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries to this sender until the request must be over."""
    lease = now + timedelta(seconds=settings.CALLBRIDGE_WEBHOOK_TIMEOUT_S + 5)
    claimed: list[Claimed] = []
    with transaction.atomic():
        candidates = _due(now)
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        for delivery in candidates.select_related("endpoint", "event")[:limit]:
            won = (
                WebhookDelivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING)
                .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
                .update(leased_until=lease)
            )
            if won:
                claimed.append(
                    Claimed(
                        delivery_id=delivery.pk,
                        url=delivery.endpoint.url,
                        secret=delivery.endpoint.secret,
                        message_id=delivery.message_id,
                        body=payload(delivery.event),
                    )
                )
    return claimed


def next_due(now: datetime) -> datetime | None:
    """When the earliest pending delivery not waiting behind an earlier one of its call may
    go (its retry time, or the end of a lease in flight). Those behind become due when it
    settles: the sender that settles it is woken (calls.webhooks.sender)."""
    return (
        _unblocked()
        .filter(endpoint__enabled=True)
        .annotate(due=Greatest("next_attempt_at", Coalesce("leased_until", "next_attempt_at")))
        .order_by("due")
        .values_list("due", flat=True)
        .first()
    )


def backoff(attempts: int) -> timedelta:
    """Exponential from the base, capped, with jitter (half to all of it) so endpoints
    that come back are not hit by every sender at once."""
    base = settings.CALLBRIDGE_WEBHOOK_RETRY_BASE_MS / 1000
    ceiling = float(settings.CALLBRIDGE_WEBHOOK_RETRY_MAX_S)
    delay = min(base * 2 ** min(attempts - 1, 40), ceiling)
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)


def record(
    delivery_id: int,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str,
    now: datetime | None = None,
) -> DeliveryState | None:
    """Log one attempt and settle the delivery: delivered on 2xx, otherwise retried later
    or, past the retry window, given up. None: the delivery is gone (endpoint deleted)."""
    now = now or timezone.now()
    ok = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            return None
        WebhookAttempt.objects.create(
            delivery=delivery,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error[:ERROR_EXCERPT_CHARS],
        )
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.leased_until = None
        if ok:
            delivery.state = DeliveryState.DELIVERED
            delivery.delivered_at = now
        else:
            retry_at = now + backoff(delivery.attempts)
            if retry_at > delivery.retry_until:
                delivery.state = DeliveryState.FAILED
            else:
                delivery.next_attempt_at = retry_at
        delivery.save()
        if not ok and delivery.state == DeliveryState.FAILED:
            # The call's next event to this endpoint may go now.
            transaction.on_commit(lambda: webhooks_queued.send(sender=WebhookDelivery))
        return DeliveryState(delivery.state)


def redeliver(deliveries: QuerySet[WebhookDelivery]) -> int:
    """Send these again (same `webhook-id`), now and with a fresh retry window; pending
    ones (perhaps in flight: their lease stays) are just made due now."""
    now = timezone.now()
    count = deliveries.exclude(state=DeliveryState.PENDING).update(
        state=DeliveryState.PENDING,
        next_attempt_at=now,
        retry_until=now + retry_window(),
        leased_until=None,
        delivered_at=None,
    )
    count += deliveries.filter(state=DeliveryState.PENDING).update(next_attempt_at=now)
    transaction.on_commit(lambda: webhooks_queued.send(sender=WebhookDelivery))
    return count
