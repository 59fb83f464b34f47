"""What makes the engine route, event-driven (no polling), always after commit and in a
database (sync) thread: the writer's own, or the deadlines service's through
database_sync_to_async.

- `queue.joined` / `queue.overflowed`: route the call's (new) queue;
- an operator becomes available (`operator_available`): route their queues; one who is
  no longer available while rung (`operator_status_changed`): their offer is withdrawn
  and its call routed on;
- offers end (answered elsewhere, the call ended, rang out) and wrap-ups start or end:
  route the queues of whoever became free, and of the calls that lost their operator.

It also connects calls.routing.waiting (the caller's `queue.waiting`, waiting audio).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from calls.model_signals import call_event_recorded, operator_available, operator_status_changed
from calls.models import Availability, CallEvent, OfferOutcome, QueueOffer
from calls.routing import engine, offers, waiting

ROUTED_EVENTS = frozenset({"queue.joined", "queue.overflowed"})


def _on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    # Already after commit (call_event_recorded is sent on commit).
    if event.name in ROUTED_EVENTS:
        queue_id = (
            CallEvent.objects.filter(pk=event.pk).values_list("call__queue_id", flat=True).first()
        )
        if queue_id is not None:
            engine.route_safely({queue_id})


def _on_operator_available(sender: Any, user_id: int, **kwargs: Any) -> None:
    transaction.on_commit(lambda: offers.route_after_commit(set(), {user_id}))


def _on_operator_status_changed(sender: Any, user_id: int, **kwargs: Any) -> None:
    # Sent after commit for any change (an offer made too); only an operator no longer
    # available who still rings has something to undo (a cheap query otherwise).
    rung = QueueOffer.objects.filter(operator_id=user_id, outcome=OfferOutcome.PENDING)
    if not rung.exclude(operator__operator_status__availability=Availability.AVAILABLE).exists():
        return  # not rung, or still available (withdraw re-checks under the locks anyway)
    queues = offers.withdraw(user_id)
    if queues:
        engine.route_safely(queues)


def connect() -> None:
    post_save.connect(offers.on_call_event_saved, sender=CallEvent, dispatch_uid="routing.offers")
    call_event_recorded.connect(_on_call_event, dispatch_uid="routing.triggers")
    # The caller's place in line and waiting audio (after calls.events' publisher).
    call_event_recorded.connect(waiting.on_call_event, dispatch_uid="routing.waiting")
    operator_available.connect(_on_operator_available, dispatch_uid="routing.available")
    operator_status_changed.connect(_on_operator_status_changed, dispatch_uid="routing.withdraw")
