"""Talking to media workers over the channel layer (they may live in other processes).

The messages are calls.workers.protocol's; the builders here translate the records'
terms (offer plans, legs, ids) into them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.db import connections

from callbridge.channel_layer import configured_layer
from callbridge.http_handler import turn_given_back
from calls.calling import LegRef, OfferPlan
from calls.errors import CallbridgeError, ErrorCode
from calls.workers import protocol
from calls.workers.protocol import worker_channel

logger = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 15.0

R = TypeVar("R", bound=protocol.Reply)


def offer_message(
    plan: OfferPlan, sdp: str, *, reply_to: str | None = None, request_id: str | None = None
) -> protocol.Offer:
    return protocol.Offer(
        call=str(plan.call_id),
        leg=str(plan.leg_id),
        role=plan.role,
        mode=plan.mode,
        kind=plan.kind,  # a draining worker refuses new calls
        sdp=sdp,
        reply_to=reply_to,
        request_id=request_id,
    )


def candidate_message(
    leg: LegRef,
    candidate: str,
    sdp_mid: str | None,
    sdp_mline_index: int | None,
    *,
    reply_to: str | None = None,
) -> protocol.Candidate:
    return protocol.Candidate(
        call=str(leg.call_id),
        leg=str(leg.leg_id),
        candidate=candidate,
        sdp_mid=sdp_mid,
        sdp_mline_index=sdp_mline_index,
        reply_to=reply_to,
    )


def close_message(leg: LegRef) -> protocol.CloseLeg:
    return protocol.CloseLeg(call=str(leg.call_id), leg=str(leg.leg_id))


def abandon_message(plan: OfferPlan) -> protocol.EndCall | protocol.CloseLeg:
    """Undo the worker's side of an offer the records refused."""
    if plan.kind == protocol.OfferKind.CREATE:
        return end_call_message(plan.call_id)
    return close_message(LegRef(plan.call_id, plan.leg_id, plan.role, plan.worker))


def record_stop_message(
    call_id: uuid.UUID | str,
    recording_id: uuid.UUID | str,
    reason: str,
    by: str,
    cutoff: float | None = None,
) -> protocol.RecordStop:
    """Stop a recording; `cutoff` (unix time): keep no audio after it."""
    return protocol.RecordStop(
        call=str(call_id), recording=str(recording_id), reason=reason, by=by, cutoff=cutoff
    )


def end_call_message(call_id: uuid.UUID | str) -> protocol.EndCall:
    return protocol.EndCall(call=str(call_id))


async def send(worker: str, message: protocol.Request) -> None:
    await configured_layer().send(worker_channel(worker), protocol.encode(message))


async def request(
    worker: str, message: protocol.RequestFor[R], within: float = REPLY_TIMEOUT_S
) -> R:
    """Send and wait for the worker's reply (for callers without a socket: REST).
    CallbridgeError when it refuses, does not answer in time, or answers in another
    protocol version."""
    layer = configured_layer()
    # The default prefix: channels-redis serves every process-local channel with one
    # blocking pop on "specific.<process>!"; another prefix queues behind it for seconds.
    reply_to = await layer.new_channel()
    await send(worker, replace(message, reply_to=reply_to, request_id=reply_to))
    try:
        async with turn_given_back(), asyncio.timeout(within):
            raw = await layer.receive(reply_to)
    except TimeoutError:
        raise CallbridgeError(
            ErrorCode.MEDIA_BRIDGE_FAILURE, "the media worker did not answer"
        ) from None
    reply = read_reply(raw)
    if isinstance(reply, protocol.Error):
        raise reply.as_exception()
    if not protocol.answers(reply, message):
        logger.error("media worker %s answered %s with %s", worker, message.TYPE, reply.TYPE)
        raise CallbridgeError(
            ErrorCode.MEDIA_BRIDGE_FAILURE, f"the media worker answered {reply.TYPE}"
        )
    return reply


def request_from_thread(
    worker: str, message: protocol.RequestFor[R], within: float = REPLY_TIMEOUT_S
) -> R:
    """`request`, from a synchronous caller (a REST view's thread). Outside a transaction
    the thread's database connections are closed first — on PostgreSQL, back to the pool:
    while it waits, its HTTP turn goes to another request (callbridge/http_handler.py),
    which needs a connection of its own; a burst of offers waiting on the worker with
    theirs held emptied the pool."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
    return async_to_sync(request)(worker, message, within)


def read_reply(raw: dict[str, Any]) -> protocol.Reply:
    """A worker's reply; one that does not parse (a worker of another protocol version)
    is logged and read as the MEDIA_BRIDGE_FAILURE Error it amounts to."""
    try:
        return protocol.parse_reply(raw)
    except protocol.ProtocolError as problem:
        logger.error("unreadable reply from a media worker (%.40r): %s", raw.get("type"), problem)
        return protocol.refusal(raw, problem)
