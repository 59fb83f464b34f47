"""Talking to media workers over the channel layer (they may live in other processes)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from callbridge.channel_layer import configured_layer
from calls.calling import LegRef, OfferKind, OfferPlan
from calls.errors import CallbridgeError, ErrorCode
from calls.media.worker import worker_channel

REPLY_TIMEOUT_S = 15.0


def offer_message(plan: OfferPlan, sdp: str) -> dict[str, Any]:
    return {
        "type": "media.offer",
        "kind": plan.kind,  # a draining worker refuses new calls
        "call": str(plan.call_id),
        "leg": str(plan.leg_id),
        "role": plan.role,
        "mode": plan.mode,
        "sdp": sdp,
    }


def candidate_message(leg: LegRef, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "media.candidate",
        "call": str(leg.call_id),
        "leg": str(leg.leg_id),
        "candidate": data["candidate"],
        "sdpMid": data.get("sdpMid"),
        "sdpMLineIndex": data.get("sdpMLineIndex"),
    }


def close_message(leg: LegRef) -> dict[str, Any]:
    return {"type": "media.close", "call": str(leg.call_id), "leg": str(leg.leg_id)}


def abandon_message(plan: OfferPlan) -> dict[str, Any]:
    """Undo the worker's side of an offer the records refused."""
    if plan.kind == OfferKind.CREATE:
        return end_call_message(plan.call_id)
    return close_message(LegRef(plan.call_id, plan.leg_id, plan.role, plan.worker))


def record_stop_message(
    call_id: uuid.UUID | str,
    recording_id: uuid.UUID | str,
    reason: str,
    by: str,
    cutoff: float | None = None,
) -> dict[str, Any]:
    """Stop a recording; `cutoff` (unix time): keep no audio after it."""
    return {
        "type": "media.record_stop",
        "call": str(call_id),
        "recording": str(recording_id),
        "reason": reason,
        "by": by,
        "cutoff": cutoff,
    }


def end_call_message(call_id: uuid.UUID | str) -> dict[str, Any]:
    return {"type": "media.end_call", "call": str(call_id)}


async def send(worker: str, message: dict[str, Any]) -> None:
    await configured_layer().send(worker_channel(worker), message)


async def request(worker: str, message: dict[str, Any], within: float = REPLY_TIMEOUT_S) -> dict:
    """Send and wait for the worker's reply (for callers without a socket: REST)."""
    layer = configured_layer()
    # The default prefix: channels-redis serves every process-local channel with one
    # blocking pop on "specific.<process>!"; another prefix queues behind it for seconds.
    reply_to = await layer.new_channel()
    await layer.send(
        worker_channel(worker), {**message, "reply_to": reply_to, "request_id": reply_to}
    )
    try:
        async with asyncio.timeout(within):
            reply = await layer.receive(reply_to)
    except TimeoutError:
        raise CallbridgeError(
            ErrorCode.MEDIA_BRIDGE_FAILURE, "the media worker did not answer"
        ) from None
    if reply["type"] == "media.error":
        raise CallbridgeError(ErrorCode(reply["code"]), reply["message"])
    return reply
