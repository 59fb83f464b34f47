"""Fan-out of call records to the sockets and media workers that need them.

Every CallEvent, once committed, goes to the channel-layer groups of who may see it:
  operators        every call (the dashboard, registered operator sockets)
  session-<id>     the calls of one end-user session (its registered sockets)
  call-<id>        the sockets that joined that call with an offer
and a call that ended tells its media worker to close the legs. Presence changes of
end-user sessions and operators' status changes go to `operators`. The messages carry
snapshots (calls.signaling.payloads) read here once; each consumer shapes from them what
its socket may see.

Records are written in sync threads; those threads only enqueue what to send. One
EventPublisher task on the event loop sends it, in commit order, so a database thread never
waits for the loop (which may be waiting for that thread). Without a running publisher
(management commands, tests without a loop) the send happens in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, time
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import Prefetch, Q
from django.utils import timezone

from callbridge.channel_layer import configured_layer
from calls import availability
from calls.consent import consent_status, supervisor_leg
from calls.models import (
    Call,
    CallbackRequest,
    CallDirection,
    CallEvent,
    CallMode,
    CallNotes,
    EndUserSession,
    OfferOutcome,
    Queue,
    QueueOffer,
    Transfer,
    TransferKind,
    TransferOutcome,
)
from calls.models.call import CallQuerySet
from calls.signaling import payloads
from calls.workers import link, protocol

logger = logging.getLogger(__name__)

OPERATORS_GROUP = "operators"


def session_group(session_id: Any) -> str:
    return f"session-{session_id}"


def call_group(call_id: Any) -> str:
    return f"call-{call_id}"


def call_snapshot(call: Call) -> payloads.CallSnapshot:
    """What the sockets may be told of a call, read once (load it with summarised_calls)."""
    latest = call.latest_recording
    transfer = _open_transfer(call)
    blind = transfer is not None and transfer.kind != TransferKind.ATTENDED
    return payloads.CallSnapshot(
        call_id=str(call.pk),
        state=call.state,
        mode=call.mode,
        direction=call.direction,
        caller_role=call.caller_role,
        session_id=str(call.session_id) if call.session_id else None,
        display_name=call.session.display_name if call.session else "",
        operator=str(call.operator_user or call.operator_token or ""),
        created_at=call.created_at.isoformat(),
        answered_at=call.answered_at.isoformat() if call.answered_at else None,
        ended_at=call.ended_at.isoformat() if call.ended_at else None,
        end_reason=call.end_reason or None,
        ring_deadline=call.ring_deadline.isoformat() if call.ring_deadline else None,
        legs=tuple(
            payloads.LegSnapshot(str(leg.pk), leg.role, leg.media_state) for leg in call.legs.all()
        ),
        consent_missing=tuple(consent_status(call).missing if call.is_open else ()),
        recording=None
        if latest is None
        else payloads.RecordingSnapshot(str(latest.pk), latest.state, latest.stop_reason),
        queue=call.queue.public_id if call.queue else None,
        queue_name=call.queue.name if call.queue else "",
        queued_at=call.queued_at.isoformat() if call.queued_at else None,
        # A transfer ringing one operator: only they may answer, whatever the queue.
        open_answer=(call.queue is None or call.queue.open_answer)
        and not (transfer is not None and transfer.to_user_id is not None),
        transferring=transfer.target_label if transfer is not None and blind else None,
        **_consulting(transfer if not blind else None),
        offers=tuple(
            payloads.OfferSnapshot(offer.operator.get_username(), offer.deadline.isoformat())
            for offer in _pending_offers(call)
        ),
        external_id=call.external_id or "",
        caller=call.caller,
        callee=call.callee,
        disposition=_disposition_code(call),
        held_at=call.held_at.isoformat() if call.held_at else None,
        held_by=call.held_by,
        **_supervision(call),
    )


def _consulting(consult: Transfer | None) -> dict[str, Any]:
    """An attended transfer's consult under way: whom, and whether they answered."""
    if consult is None or consult.to_user is None:
        return {}
    return {
        "consulting": consult.to_user.get_username(),
        "consult_answered": consult.answered_at is not None,
        "consult_by": consult.by,
    }


def _supervision(call: Call) -> dict[str, Any]:
    leg = supervisor_leg(call) if call.is_open else None
    if leg is None:
        return {}
    return {"supervisor_mode": leg.supervisor_mode, "supervised_by": leg.party}


def _disposition_code(call: Call) -> str | None:
    notes = CallNotes.of(call)
    return notes.disposition.code if notes is not None and notes.disposition else None


def _open_transfer(call: Call) -> Transfer | None:
    prefetched = getattr(call, "open_transfers", None)  # summarised_calls' Prefetch
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    pending = call.transfers.filter(outcome=TransferOutcome.PENDING)
    return pending.select_related("to_user", "to_queue").first()


def _pending_offers(call: Call) -> list[QueueOffer]:
    prefetched = getattr(call, "pending_offers", None)  # summarised_calls' Prefetch
    if prefetched is not None:
        return list(prefetched)
    pending = call.offers.filter(outcome=OfferOutcome.PENDING)
    return list(pending.select_related("operator").order_by("offered_at"))


def callback_snapshot(request: CallbackRequest) -> payloads.CallbackSnapshot:
    """A callback request as operators see it (load `queue`, `session`, `handled_by`)."""
    session = request.session
    handler = request.handled_by
    return payloads.CallbackSnapshot(
        callback_id=str(request.pk),
        state=request.state,
        call_id=str(request.call_id),
        queue=request.queue.public_id,
        queue_name=request.queue.name,
        session_id=str(request.session_id) if request.session_id else None,
        display_name=request.display_name,
        note=request.note,
        requested_at=request.requested_at.isoformat(),
        attempts=request.attempts,
        handled_by=handler.get_username() if handler is not None else request.handled_by_label,
        handled_at=request.handled_at.isoformat() if request.handled_at else None,
        callback_call_id=str(request.callback_call_id) if request.callback_call_id else None,
        online=bool(session is not None and session.online and session.is_usable),
    )


def session_snapshot(session: EndUserSession) -> payloads.SessionSnapshot:
    return payloads.SessionSnapshot(
        session_id=str(session.pk),
        display_name=session.display_name,
        online=session.online,
        metadata=session.metadata,
    )


def operator_snapshot(view: availability.OperatorView) -> payloads.OperatorStatusSnapshot:
    return payloads.OperatorStatusSnapshot(
        operator=view.username,
        name=view.name,
        availability=view.availability,
        activity=view.activity,
        changed_at=view.changed_at.isoformat() if view.changed_at else None,
    )


def queue_snapshots() -> list[payloads.QueueSnapshot]:
    return [
        payloads.QueueSnapshot(
            public_id=view.queue.public_id,
            name=view.queue.name,
            strategy=view.queue.strategy,
            waiting=view.waiting,
            longest_wait_s=view.longest_wait_s,
            members=tuple(
                user.get_username() for user in view.queue.member_users().order_by("username")
            ),
        )
        for view in availability.queue_views(list(Queue.objects.order_by("name")))
    ]


def summarised_calls() -> CallQuerySet:
    """Calls with everything call_snapshot reads, loaded in a few queries."""
    pending = QueueOffer.objects.filter(outcome=OfferOutcome.PENDING).select_related("operator")
    return Call.objects.select_related(
        "session", "operator_user", "operator_token", "queue", "call_notes__disposition"
    ).prefetch_related(
        "legs",
        "consents",
        "recordings",
        Prefetch("offers", queryset=pending.order_by("offered_at"), to_attr="pending_offers"),
        Prefetch(
            "transfers",
            queryset=Transfer.objects.filter(outcome=TransferOutcome.PENDING).select_related(
                "to_user", "to_queue"
            ),
            to_attr="open_transfers",
        ),
    )


RECENT_ENDED = 20  # ended calls in the operator feed's first message
MISSED_SHOWN = 100  # today's missed calls in it
# The end reasons of a caller nobody talked to (the dashboard's "Missed calls"); a
# `cancelled` one only counts when the caller gave up waiting in a queue.
MISSED_REASONS = ("missed", "rejected", "no_operator", "callback_requested", "voicemail")


def missed_calls(since: Any) -> CallQuerySet:
    """Inbound calls to the operators that ended unanswered since `since`, newest first."""
    unanswered = (
        summarised_calls()
        .finished()
        .filter(
            direction=CallDirection.INBOUND,
            mode=CallMode.BRIDGE,
            answered_at=None,
            ended_at__gte=since,
        )
    )
    return unanswered.filter(
        Q(end_reason__in=MISSED_REASONS) | Q(end_reason="cancelled", queue__isnull=False)
    ).order_by("-ended_at")


def feed_snapshot() -> dict[str, Any]:
    """/ws/operator's first message: open calls, the last ended ones, end users online,
    operators, queues, pending callback requests and today's missed calls."""
    open_calls = summarised_calls().open()
    recent = summarised_calls().finished().order_by("-ended_at")[:RECENT_ENDED]
    online = EndUserSession.objects.filter(online=True, revoked_at=None)
    pending = CallbackRequest.objects.pending().select_related("queue", "session", "handled_by")
    start_of_today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    return payloads.feed_snapshot(
        [call_snapshot(call) for call in open_calls],
        [call_snapshot(call) for call in recent],
        [session_snapshot(session) for session in online if session.is_usable],
        [operator_snapshot(view) for view in availability.all_operators()],
        queue_snapshots(),
        [callback_snapshot(request) for request in pending],
        [call_snapshot(call) for call in missed_calls(start_of_today)[:MISSED_SHOWN]],
    )


def event_message(event: CallEvent, call: Call) -> dict[str, Any]:
    """The channel-layer message of a recorded event (payloads.call_event_from_message)."""
    snapshot = payloads.CallEventSnapshot(event.pk, event.name, event.data, call_snapshot(call))
    return {"type": "call.event", **payloads.to_message(snapshot)}


def publish_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    """Receiver of call_event_recorded (runs after commit, in the writer's thread)."""
    try:
        call = summarised_calls().get(pk=event.call_id)
        message = event_message(event, call)
        groups = [OPERATORS_GROUP, call_group(call.pk)]
        if call.session_id:
            groups.append(session_group(call.session_id))
        worker = call.media_worker if event.name == "call.ended" else ""

        async def send() -> None:
            await _group_send(groups, message)
            if worker:
                await link.send(worker, link.end_call_message(event.call_id))

        send_from_any_thread(send)
        if event.name in ACTIVITY_EVENTS and call.operator_user_id is not None:
            # The staff operator's activity follows their calls (busy / idle).
            publish_operator_status(Call, call.operator_user_id)
    except Exception:
        logger.exception("could not publish %s of call %s", event.name, event.call_id)


# The call events that start or end a staff operator's being busy.
ACTIVITY_EVENTS = frozenset({"call.created", "call.answered", "call.ended"})


def publish_operator_status(sender: Any, user_id: int, **kwargs: Any) -> None:
    """Receiver of operator_status_changed (after commit): `operator.status` to the feed."""
    try:
        view = availability.view_of_id(user_id)
        if view is None:
            return  # no longer an operator: nothing to show
        message = {
            "type": "operator.status",
            "status": payloads.to_message(operator_snapshot(view)),
        }

        async def send() -> None:
            await _group_send([OPERATORS_GROUP], message)

        send_from_any_thread(send)
    except Exception:
        logger.exception("could not publish the status of operator %s", user_id)


def publish_presence(session: EndUserSession) -> None:
    name = "presence.online" if session.online else "presence.offline"
    message = {"type": "presence.event", "session": payloads.to_message(session_snapshot(session))}
    try:
        send_from_any_thread(lambda: _group_send([OPERATORS_GROUP], message))
    except Exception:
        logger.exception("could not publish %s of session %s", name, session.pk)


async def _group_send(groups: list[str], message: dict[str, Any]) -> None:
    layer = configured_layer()
    for group in groups:
        await layer.group_send(group, message)


Send = Callable[[], Awaitable[None]]


class EventPublisher:
    """Sends what database threads enqueued, in order, from the event loop."""

    active: EventPublisher | None = None

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Send] = asyncio.Queue()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        EventPublisher.active = self
        try:
            while True:
                send = await self._queue.get()
                try:
                    await send()
                except Exception:
                    logger.exception("could not deliver a call event")
                finally:
                    self._queue.task_done()
        finally:
            if EventPublisher.active is self:
                EventPublisher.active = None
            await self._send_queued()

    async def _send_queued(self, within: float = 2.0) -> None:
        """Stopping: still send what was queued (the calls a shutdown just ended)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self._queue.empty():
                    try:
                        await self._queue.get_nowait()()
                    except Exception:
                        logger.exception("could not deliver a call event")
                    finally:
                        self._queue.task_done()

    async def flush(self) -> None:
        """Until everything submitted so far is sent (a stopping process's last events)."""
        await asyncio.sleep(0)  # let submissions already scheduled from threads land
        await self._queue.join()

    def submit(self, send: Send) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed() or EventPublisher.active is not self:
            return False
        loop.call_soon_threadsafe(self._queue.put_nowait, send)
        return True


def tell_worker(worker: str, message: protocol.Request) -> None:
    """Send a media worker a message that wants no reply (the record is the truth), from
    any thread, in the publisher's order (send_from_any_thread)."""

    async def send() -> None:
        await link.send(worker, message)

    send_from_any_thread(send)


def send_from_any_thread(send: Send) -> None:
    """Through the running EventPublisher, in order, else in place. Also for other
    publishers (calls.revocation): the same ordering and thread rules."""
    publisher = EventPublisher.active
    if publisher is None or not publisher.submit(send):
        async_to_sync(send)()
