"""Hold and resume: the operator party puts the end user on hold and takes them off it.

The state is the call's (`Call.hold` / `Call.resume`: `held_at`, events `call.held` /
`call.resumed` under the call's row lock); this module decides who may (policy), which
audio the held caller hears, and tells the call's media worker after commit (a receiver
of `call_event_recorded`, through the events publisher, so in commit order with the
call's other media messages). The worker's Hold carries the event's id: a later decision
always wins there, whatever order the messages arrive in.

Hold audio: the call's queue's `hold_audio`, else its `waiting_audio`, else the library
file named by CALLBRIDGE_HOLD_AUDIO; none of those: silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from calls import policy
from calls.events import tell_worker
from calls.model_signals import call_event_recorded
from calls.models import AudioFile, Call, CallEvent, Recording
from calls.principals import Principal
from calls.workers import protocol

logger = logging.getLogger(__name__)

HOLD_EVENTS = frozenset({"call.held", "call.resumed"})


def hold(principal: Principal, call: Call) -> CallEvent:
    """FORBIDDEN unless the principal is the call's operator party; CALL_STATE unless the
    call is active, a bridge call and not held already."""
    policy.require_may_hold(principal, call)
    return call.hold(principal)


def resume(principal: Principal, call: Call) -> CallEvent:
    policy.require_may_hold(principal, call)
    return call.resume(principal)


def hold_audio(call: Call) -> AudioFile | None:
    """What a held caller of `call` hears (None: silence)."""
    queue = call.queue
    if queue is not None:
        if queue.hold_audio is not None:
            return queue.hold_audio
        if queue.waiting_audio is not None:
            return queue.waiting_audio
    name = settings.CALLBRIDGE_HOLD_AUDIO
    return AudioFile.objects.filter(name=name).first() if name else None


@dataclass(frozen=True)
class HoldPeriod:
    """A hold within a recording, in seconds from its first sample (end None: it lasted
    to the recording's end)."""

    from_s: float
    to_s: float | None
    by: str


def hold_periods(recording: Recording) -> list[HoldPeriod]:
    """The holds a recording spans, from its call's `call.held` / `call.resumed` events
    (a hold in force when it started counts from 0): its timeline's hold marks."""
    origin = recording.audio_started_at or recording.started_at
    end = recording.ended_at
    periods: list[HoldPeriod] = []
    since: tuple[datetime, str] | None = None
    names = ("call.held", "call.resumed", "call.ended")
    for event in recording.call.events.filter(name__in=names).order_by("created_at", "id"):
        if event.name == "call.held":
            since = (event.created_at, event.actor)
            continue
        if since is not None and event.created_at > origin and (end is None or since[0] < end):
            to = None if end is not None and event.created_at >= end else event.created_at
            periods.append(_period(origin, since, to))
        since = None
    if since is not None and (end is None or since[0] < end):
        periods.append(_period(origin, since, None))
    return periods


def _period(origin: datetime, since: tuple[datetime, str], to: datetime | None) -> HoldPeriod:
    start = max(0.0, (since[0] - origin).total_seconds())
    stop = None if to is None else round((to - origin).total_seconds(), 1)
    return HoldPeriod(round(start, 1), stop, since[1])


def on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    """Receiver of call_event_recorded (after commit): the media follow the record."""
    if event.name not in HOLD_EVENTS:
        return  # the common case costs no query
    try:
        call = Call.objects.select_related("queue__hold_audio", "queue__waiting_audio").get(
            pk=event.call_id
        )
        if not call.media_worker:
            return
        held = event.name == "call.held"
        audio = hold_audio(call) if held else None
        message = protocol.Hold(
            call=str(call.pk),
            held=held,
            seq=event.pk,
            path=audio.file.path if audio is not None else None,
        )
        worker = call.media_worker
        tell_worker(worker, message)
    except Exception:
        logger.exception(
            "hold: could not tell the media of %s of call %s", event.name, event.call_id
        )


def connect_receivers() -> None:
    call_event_recorded.connect(on_call_event, dispatch_uid="calls.hold.media")
