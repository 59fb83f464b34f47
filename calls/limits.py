"""Caps on what one party may hold open: calls, legs with media, lobby sessions.

Every refusal is RATE_LIMITED (429) with `details.limit` (which cap) and `details.max` (its
value), and happens before anything is written or sent to a media worker.

Offers are checked twice (calls/calling.py): once when planned, before the media worker
makes a peer connection, and again when committed, under a row lock on the offering
credential, so offers racing each other cannot all pass. REST `POST /api/calls`
(`calling.start_call`) checks the call caps under the same lock before `Call.start`.

WebSocket caps (sockets per address and per credential, the sign-in deadline) live with
the other per-process socket limits in calls/consumers/throttle.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from rest_framework.throttling import SimpleRateThrottle

from calls.errors import CallbridgeError, ErrorCode
from calls.models import ApiToken, Call, CallMode, EndUserSession, Leg, MediaState
from calls.models.call import OPEN_STATES
from calls.principals import Principal

if TYPE_CHECKING:
    from calls.calling import OfferPlan

# A leg in these states has a peer connection on its media worker.
MEDIA_STATES_WITH_PEER = (MediaState.CONNECTING, MediaState.CONNECTED, MediaState.DISCONNECTED)


def over_limit(limit: str, maximum: int, message: str) -> CallbridgeError:
    return CallbridgeError(
        ErrorCode.RATE_LIMITED,
        f"{message} (at most {maximum})",
        details={"limit": limit, "max": maximum},
    )


def lock_credential(principal: Principal) -> None:
    """Lock the principal's credential row until the transaction ends: the caps are then
    counted and the new rows written one offer at a time per credential."""
    if principal.session is not None:
        rows: QuerySet[Any] = EndUserSession.objects.filter(pk=principal.session.pk)
    elif principal.api_token is not None:
        rows = ApiToken.objects.filter(pk=principal.api_token.pk)
    elif principal.user is not None:
        rows = get_user_model().objects.filter(pk=principal.user.pk)
    else:
        return  # the system: no caps
    list(rows.select_for_update().values_list("pk", flat=True))


def _open_calls_of(principal: Principal) -> tuple[QuerySet[Call], str, int]:
    if principal.session is not None:
        limit = settings.CALLBRIDGE_LIMIT_OPEN_CALLS_PER_SESSION
        return Call.objects.open().filter(session=principal.session), "openCallsPerSession", limit
    limit = settings.CALLBRIDGE_LIMIT_OPEN_CALLS_PER_OPERATOR
    if principal.api_token is not None:
        calls = Call.objects.open().filter(operator_token=principal.api_token)
    else:
        calls = Call.objects.open().filter(operator_user=principal.user)
    return calls, "openCallsPerOperator", limit


def check_new_call(principal: Principal, mode: str) -> None:
    """RATE_LIMITED if the principal may not open one more call of `mode`."""
    if principal.role == "system":
        return
    calls, limit, maximum = _open_calls_of(principal)
    if calls.count() >= maximum:
        raise over_limit(limit, maximum, "Too many open calls")
    echo_max = settings.CALLBRIDGE_LIMIT_ECHO_CALLS
    if mode == CallMode.ECHO and calls.filter(mode=CallMode.ECHO).count() >= echo_max:
        raise over_limit("echoCalls", echo_max, "Too many open echo calls")


def check_media_leg(principal: Principal, leg_id: Any) -> None:
    """RATE_LIMITED if an operator credential may not give one more leg (`leg_id`) media.

    A session's legs are capped by its open calls (one leg of the session per call)."""
    if not principal.is_operator:
        return
    if principal.api_token is not None:
        legs = Leg.objects.filter(api_token=principal.api_token)
    else:
        legs = Leg.objects.filter(user=principal.user, api_token=None)
    with_peer = (
        legs.filter(
            call__state__in=OPEN_STATES, left_at=None, media_state__in=MEDIA_STATES_WITH_PEER
        )
        .exclude(pk=leg_id)  # a reconnect replaces that leg's own peer
        .count()
    )
    maximum = settings.CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR
    if with_peer >= maximum:
        raise over_limit("mediaLegsPerOperator", maximum, "Too many legs with media")


def check_offer(principal: Principal, plan: OfferPlan) -> None:
    if plan.creates_call:
        check_new_call(principal, plan.mode)
    check_media_leg(principal, plan.leg_id)


def refuse_plans_over_limits(
    plan_offer: Callable[..., OfferPlan],
) -> Callable[..., OfferPlan]:
    """Wraps calling.plan_offer: an offer over a cap is refused before any media worker
    sees it (no peer connection is made)."""

    @wraps(plan_offer)
    def planned(principal: Principal, *args: Any, **kwargs: Any) -> OfferPlan:
        plan = plan_offer(principal, *args, **kwargs)
        check_offer(principal, plan)
        return plan

    return planned


def recheck_commits_under_lock(
    commit_offer: Callable[[Principal, OfferPlan], None],
) -> Callable[[Principal, OfferPlan], None]:
    """Wraps calling.commit_offer: counts again under the credential's lock, in the
    transaction that writes the call or leg (its callers abandon the worker's peer when
    this refuses)."""

    @wraps(commit_offer)
    def committed(principal: Principal, plan: OfferPlan) -> None:
        with transaction.atomic():
            lock_credential(principal)
            check_offer(principal, plan)
            commit_offer(principal, plan)

    return committed


class LobbyThrottle(SimpleRateThrottle):
    """New lobby sessions per client address (Django's cache, like the REST throttles)."""

    scope = "lobby"

    def get_rate(self) -> str:
        return settings.CALLBRIDGE_LIMIT_LOBBY_SESSIONS_PER_IP

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
