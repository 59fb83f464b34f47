"""REST signaling (complete ICE gathering, answer in the response), shared with WaGo's API."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync

from calls import calling, setup_trace
from calls.calling import OfferPlan
from calls.errors import CallbridgeError
from calls.models import Call, Leg, MediaState
from calls.principals import Principal
from calls.workers import link


def answer_offer(
    principal: Principal, call_id: str, sdp: str, arrived: float | None = None
) -> tuple[OfferPlan, str]:
    """Connect the principal's leg of `call_id` with this offer; returns the answer SDP.
    `arrived`: when the request reached the server (unix time, for calls.setup_trace)."""
    entered = time.time()
    plan = calling.plan_offer(principal, call_id, None)
    if arrived is not None:
        setup_trace.mark(plan.leg_id, "http.arrived", arrived)
    setup_trace.mark(plan.leg_id, "view.entered", entered)
    setup_trace.mark(plan.leg_id, "offer.planned")
    reply = link.request_from_thread(plan.worker, link.offer_message(plan, sdp))
    setup_trace.mark(plan.leg_id, "view.answer_back")
    try:
        calling.commit_offer(principal, plan)
    except CallbridgeError:
        async_to_sync(link.send)(plan.worker, link.abandon_message(plan))
        raise
    setup_trace.mark(plan.leg_id, "offer.committed")
    return plan, reply.sdp


def close_media(principal: Principal, call: Call) -> None:
    """Close the principal's leg media; the call stays (a new offer reconnects)."""
    leg = calling.own_leg(principal, call)
    link.request_from_thread(leg.worker, link.close_message(leg))
    Leg.objects.get(pk=leg.leg_id).set_media_state(MediaState.CLOSED)
