"""A call's timeline for REST (`GET /api/calls/{id}/events`): its recorded events, each
shaped as the asker's socket would have been told it (calls.signaling.payloads).

Parties see the party view (/ws/signal: wire names, no operators' accounts, nothing they
are not told); operators the feed's (/ws/operator: every record, with who did it). Each
event is shaped with the call's state as of that event (the records carry it), not now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from django.db.models import Q

from calls import policy
from calls.events import call_snapshot, summarised_calls
from calls.models import Call, CallEvent
from calls.principals import Principal
from calls.signaling import payloads


def state_before(call: Call, first: CallEvent) -> str:
    """The call's state just before `first` (the latest earlier record that states it)."""
    earlier = (
        CallEvent.objects.filter(call=call, data__has_key="state")
        .filter(
            Q(created_at__lt=first.created_at) | Q(created_at=first.created_at, pk__lt=first.pk)
        )
        .order_by("-created_at", "-id")
        .values_list("data", flat=True)
        .first()
    )
    return str(earlier["state"]) if earlier else "ringing"


def shaped(principal: Principal, call: Call, events: Iterable[CallEvent]) -> list[dict[str, Any]]:
    """`events` (in order) as `principal` may see them; those it would not be told are left
    out."""
    rows = list(events)
    if not rows:
        return []
    snapshot = call_snapshot(summarised_calls().get(pk=call.pk))
    operator_view = principal.is_operator
    my_leg = next((str(leg.pk) for leg in call.legs.all() if principal.owns(leg)), "")
    state = state_before(call, rows[0])
    out: list[dict[str, Any]] = []
    for row in rows:
        state = str(row.data.get("state", state))
        event = payloads.CallEventSnapshot(
            event_id=row.pk,
            name=row.name,
            data=row.data,
            call=dataclasses.replace(snapshot, state=state),
        )
        if operator_view:
            data = payloads.feed_event(event)["data"]
            data.pop("call")  # the call as it is now: GET /api/calls/{id}
            extra = {"actor": row.actor, "actorRole": row.actor_role}
        else:
            wire = payloads.party_event(event, principal.role, my_leg)
            if wire is None:
                continue
            data, extra = wire["data"], {}
        out.append({"eventID": row.pk, "at": row.created_at.isoformat(), **data, **extra})
    return out


def require_may_read(principal: Principal, call: Call) -> None:
    """As for the call itself: operators any call, an end user its own session's."""
    policy.require_access(principal, call)
