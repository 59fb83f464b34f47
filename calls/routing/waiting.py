"""The caller's side of waiting in a queue: its place in line and the queue's waiting audio.

Event-driven, after commit, in the writer's (sync) thread (a receiver of
`call_event_recorded`, connected by triggers.connect after calls.events' publisher, so a
caller hears of its own answer before the others hear they moved up):

- `queue.waiting {queue, queueName, position, waitedS, callback}` goes to the session group of every
  caller whose place changed: one query for the queue's line per change (a call joins,
  is answered, ends or overflows), never per caller, never polled. Not in the default
  queue (`open_answer`): there every operator sees every ringing call and picks any, so a
  place in line would promise an order nobody keeps (and existing clients' message
  streams stay as they were).
- waiting audio: once the caller's leg has media (`media.connected`, role user) on a
  ringing call whose queue has `waiting_audio`, the call's media worker plays it to that
  leg, looped (`Play.loop`, playback id WAITING_PLAYBACK); an overflow switches to the
  new queue's audio (or none); the answer stops it (`PlayStop(playback=…)`), and the
  worker also ends it when the operator's leg joins and refuses it once one is there, so
  a late play never sounds over an answered call. The call's end closes the legs anyway.
  The voicemail stage (`queue.voicemail_offered`) replaces it with the queue's greeting,
  played once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from callbridge.channel_layer import configured_layer
from calls.events import send_from_any_thread, session_group, tell_worker
from calls.models import Call, CallEvent, CallState, Queue
from calls.workers import protocol

logger = logging.getLogger(__name__)

WAITING_PLAYBACK = "waiting"
LINE_ORDER = ("queued_at", "created_at", "id")  # the engine's order (engine.route)
# `queue.voicemail_offered`: the caller left the line for the voicemail stage.
POSITION_EVENTS = frozenset(
    {"queue.joined", "queue.overflowed", "queue.voicemail_offered", "call.answered", "call.ended"}
)


def tells_position(queue: Queue | None) -> bool:
    return queue is not None and not queue.open_answer


def position_of(call: Call) -> int | None:
    """The call's place in its queue's line (1: next), None when it is not waiting in a
    queue that tells places. For REST (`queuePosition`): the same order as the event."""
    if call.state != CallState.RINGING or call.queued_at is None or call.queue_id is None:
        return None
    if not tells_position(call.queue):
        return None
    ahead = Call.objects.filter(queue_id=call.queue_id, state=CallState.RINGING).filter(
        Q(queued_at__lt=call.queued_at)
        | Q(queued_at=call.queued_at, created_at__lt=call.created_at)
        | Q(queued_at=call.queued_at, created_at=call.created_at, id__lt=call.pk)
    )
    return ahead.count() + 1


def places_of(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """The `queue.waiting` messages of those of `calls` waiting where places are told:
    what a (re)registering caller's socket missed (a reload, a dropped socket)."""
    now = timezone.now()
    messages = []
    for call in calls:
        position = position_of(call)
        if position is not None and call.queue is not None:
            waited = (now - call.created_at).total_seconds()
            messages.append(waiting_message(str(call.pk), call.queue, position, waited))
    return messages


def waiting_message(call_id: str, queue: Queue, position: int, waited_s: float) -> dict[str, Any]:
    """The channel-layer message (the /ws/signal consumer shapes it with
    payloads.queue_waiting_event)."""
    return {
        "type": "queue.waiting",
        "call_id": call_id,
        "queue": queue.public_id,
        "queue_name": queue.name,
        "position": position,
        "waited_s": round(waited_s, 1),
        "callback": queue.offers_callbacks,  # whether it may ask for a callback instead
    }


def publish_positions(queue_id: int, moved_since: datetime | None) -> None:
    """Tell the callers in `queue_id`'s line queued at or after `moved_since` (None:
    all of them) their place: one query for the line."""
    queue = Queue.objects.filter(pk=queue_id).first()
    if not tells_position(queue):
        return
    assert queue is not None
    line = Call.objects.filter(queue=queue, state=CallState.RINGING).order_by(*LINE_ORDER)
    now = timezone.now()
    messages: list[tuple[str, dict[str, Any]]] = []
    rows = line.values_list("id", "session_id", "queued_at", "created_at")
    for position, (call_id, session_id, queued_at, created_at) in enumerate(rows, start=1):
        if session_id is None or (moved_since and queued_at and queued_at < moved_since):
            continue  # no end user to tell, or ahead of the change: its place is the same
        # The caller's whole wait, across overflows: what it has lived through.
        message = waiting_message(str(call_id), queue, position, (now - created_at).total_seconds())
        messages.append((session_group(session_id), message))
    if not messages:
        return

    async def send() -> None:
        layer = configured_layer()
        for group, message in messages:
            await layer.group_send(group, message)

    send_from_any_thread(send)


def _tell_no_place(call: Call) -> None:
    assert call.queue is not None
    waited = (timezone.now() - call.created_at).total_seconds()
    message = {**waiting_message(str(call.pk), call.queue, 0, waited), "position": None}
    group = session_group(call.session_id)

    async def send() -> None:
        await configured_layer().group_send(group, message)

    send_from_any_thread(send)


def on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    # Already after commit (call_event_recorded is sent on commit).
    caller_media = event.name == "media.connected" and event.data.get("role") == "user"
    if event.name not in POSITION_EVENTS and not caller_media:
        return  # the common case costs no query
    try:
        call = Call.objects.select_related(
            "queue", "queue__waiting_audio", "queue__voicemail_greeting"
        ).get(pk=event.call_id)
        if event.name in POSITION_EVENTS:
            _positions_after(event, call)
        _waiting_audio_after(event, call)
    except Exception:
        logger.exception("queue waiting: could not handle %s of call %s", event.name, event.call_id)


def _positions_after(event: CallEvent, call: Call) -> None:
    if call.queue_id is None or call.queued_at is None:
        return
    if event.name in ("queue.joined", "queue.overflowed"):
        publish_positions(call.queue_id, call.queued_at)  # the newcomer (last in line)
        if event.name == "queue.overflowed":
            if not tells_position(call.queue) and call.session_id is not None:
                _tell_no_place(call)  # moved where no place is told: the old one is void
            left = Queue.objects.filter(public_id=event.data.get("from")).first()
            if left is not None:
                publish_positions(left.pk, None)
    elif event.name == "call.answered" or call.answered_at is None:
        # It left the line (answered, or ended while waiting): those behind moved up.
        publish_positions(call.queue_id, call.queued_at)


def _waiting_audio_after(event: CallEvent, call: Call) -> None:
    worker = call.media_worker
    if not worker:
        return
    if event.name == "call.answered":
        if call.queue is None or call.queue.waiting_audio_id is None:
            return  # nothing was playing (an overflow out of a queue with audio stopped it)
        _send(worker, protocol.PlayStop(call=str(call.pk), playback=WAITING_PLAYBACK))
        return
    if event.name == "queue.voicemail_offered":
        _greet(worker, call)
        return
    if call.state != CallState.RINGING:
        return
    if event.name == "media.connected" and event.data.get("role") == "user":
        _play_waiting_audio(worker, call)
    elif event.name == "queue.overflowed" and _user_media_connected(call):
        if call.queue is not None and call.queue.waiting_audio is not None:
            _play_waiting_audio(worker, call)  # the same playback id: replaces the old one
        else:
            _send(worker, protocol.PlayStop(call=str(call.pk), playback=WAITING_PLAYBACK))


def _user_media_connected(call: Call) -> bool:
    return call.legs.filter(role="user", media_state="connected").exists()


def _play_waiting_audio(worker: str, call: Call) -> None:
    queue = call.queue
    if queue is None or queue.waiting_audio is None:
        return
    play = protocol.Play(
        call=str(call.pk),
        playback=WAITING_PLAYBACK,
        path=queue.waiting_audio.file.path,
        to="user",
        loop=True,
    )
    _send(worker, play)


def _greet(worker: str, call: Call) -> None:
    """The voicemail stage: the waiting audio stops and the queue's greeting plays once,
    under the same playback id (it replaces the loop in one step; "Leave a message" stops
    it: calls.voicemail). No media yet: nothing to play to."""
    if not _user_media_connected(call):
        return
    greeting = call.queue.voicemail_greeting if call.queue is not None else None
    if greeting is None:
        _send(worker, protocol.PlayStop(call=str(call.pk), playback=WAITING_PLAYBACK))
        return
    play = protocol.Play(
        call=str(call.pk), playback=WAITING_PLAYBACK, path=greeting.file.path, to="user"
    )
    _send(worker, play)


def _send(worker: str, message: protocol.Request) -> None:
    # No reply wanted: a refusal (the operator is already there) needs no action.
    tell_worker(worker, message)
