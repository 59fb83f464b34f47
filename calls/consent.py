"""The recording-consent policy: what counts, who is missing, recording an answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeGuard

from django.conf import settings
from django.db import transaction

from calls import policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import (
    Branding,
    Call,
    ConsentMethod,
    Leg,
    LegRole,
    RecordingConsent,
    SupervisorMode,
)
from calls.models.branding import SINGLETON_ID
from calls.principals import PartyKey, Principal, party_key_of

# Which ways of consenting each kind of party may claim.
METHODS_BY_KIND = {
    "end_user": {ConsentMethod.PAGE, ConsentMethod.API},
    "staff": {ConsentMethod.DASHBOARD, ConsentMethod.API},
    "api_token": {ConsentMethod.API},
}


@dataclass(frozen=True)
class ConsentNotice:
    version: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def current_notice() -> ConsentNotice:
    """The notice people agree to: the admin's branding (text and version together), else
    the settings'. Consents record its version and its text's SHA-256."""
    brand = (
        Branding.objects.filter(pk=SINGLETON_ID)
        .only("consent_text", "consent_policy_version")
        .first()
    )
    if brand is not None and brand.consent_text and brand.consent_policy_version:
        return ConsentNotice(brand.consent_policy_version, brand.consent_text)
    return ConsentNotice(
        settings.CALLBRIDGE_CONSENT_POLICY_VERSION, settings.CALLBRIDGE_CONSENT_TEXT
    )


def consent_text_sha256() -> str:
    return current_notice().sha256


def required_roles(call: Call) -> set[str]:
    mode = settings.CALLBRIDGE_RECORDING_CONSENT
    if mode == "none":
        return set()
    if mode == "user":
        user_only: set[str] = {LegRole.USER}
        return user_only & call.media_roles
    roles = set(call.media_roles)
    if barging_leg(call) is not None:
        # Heard by the end user and in the call like any party (calls.supervision);
        # monitoring and whispering supervisors are not (the user never hears them).
        roles.add(LegRole.SUPERVISOR)
    return roles


def supervisor_leg(call: Call) -> Leg | None:
    """The call's supervisor now (legs from the prefetch cache when there is one)."""
    return next(
        (leg for leg in call.legs.all() if leg.role == LegRole.SUPERVISOR and leg.left_at is None),
        None,
    )


def barging_leg(call: Call) -> Leg | None:
    leg = supervisor_leg(call)
    return leg if leg is not None and leg.supervisor_mode == SupervisorMode.BARGE else None


def counts_for(call: Call, leg: Leg) -> bool:
    """Whether the party of `leg` has a consent that counts now."""
    return _counts(current_consents(call).get(party_key_of(leg)), current_notice())


def current_consents(call: Call) -> dict[PartyKey, RecordingConsent]:
    """Each party's latest answer, by identity (rows are in time order: later ones win).
    One party's answer never stands for another's, even in the same role."""
    latest: dict[PartyKey, RecordingConsent] = {}
    # Sorted here, not by the query: lists prefetch every call's consents at once.
    for consent in sorted(call.consents.all(), key=lambda c: (c.created_at, c.pk)):
        latest[party_key_of(consent)] = consent
    return latest


def _counts(consent: RecordingConsent | None, notice: ConsentNotice) -> TypeGuard[RecordingConsent]:
    return (
        consent is not None
        and consent.granted
        and consent.policy_version == notice.version
        and consent.text_sha256 == notice.sha256
    )


@dataclass(frozen=True)
class ConsentStatus:
    policy: str
    version: str
    required: list[str]
    missing: list[str]
    relied_on: list[RecordingConsent]


class ConsentMissing(Exception):
    def __init__(self, status: ConsentStatus) -> None:
        super().__init__(f"missing consent of: {', '.join(status.missing)}")
        self.status = status


def consent_status(call: Call) -> ConsentStatus:
    """Whose consent the policy needs — every human party present, by identity — and
    whose is missing (by role: each role has one party in a call)."""
    latest = current_consents(call)
    required = sorted(required_roles(call))
    present = {
        leg.role: party_key_of(leg)
        for leg in call.legs.all()
        if leg.role in required and leg.left_at is None  # supervisors who left: not present
    }
    missing: list[str] = []
    relied_on: list[RecordingConsent] = []
    notice = current_notice()  # read once: one query per status, not per party
    for role in required:
        consent = latest.get(present[role]) if role in present else None
        if _counts(consent, notice):
            relied_on.append(consent)
        else:
            missing.append(role)
    return ConsentStatus(
        policy=settings.CALLBRIDGE_RECORDING_CONSENT,
        version=notice.version,
        required=required,
        missing=missing,
        relied_on=relied_on,
    )


def consents_relied_on(locked_call: Call) -> list[RecordingConsent]:
    """For Recording.begin, under the call's lock: the consents a recording may rely on
    now, read fresh from the database; ConsentMissing if one is missing."""
    status = consent_status(locked_call)
    if status.missing:
        raise ConsentMissing(status)
    return status.relied_on


def record_answer(
    principal: Principal,
    call: Call,
    *,
    granted: bool,
    policy_version: str,
    method: str,
    ip: str | None,
    user_agent: str,
) -> RecordingConsent:
    """Record the principal's own consent (or withdrawal) for `call` (its parties, who
    may answer it, and its supervisor now, as a supervisor)."""
    _require_may_consent(principal, call)
    notice = current_notice()  # one read: the version checked is the text recorded
    if policy_version != notice.version:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            f"policy {policy_version!r} is not the current consent policy "
            f"({notice.version!r}): show the current text",
        )
    if method not in METHODS_BY_KIND.get(principal.kind, set()):
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"method {method!r} is not available to you"
        )
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        as_supervisor = _require_may_consent(principal, locked)  # again: who is in it may change
        if not locked.is_open:
            raise CallStateError(f"the call is {locked.state}")
        party = principal.party_fields()
        if as_supervisor:
            party["role"] = LegRole.SUPERVISOR
        consent = RecordingConsent.objects.create(
            call=locked,
            **party,
            granted=granted,
            policy_version=policy_version,
            text_sha256=notice.sha256,
            method=method,
            ip=ip,
            user_agent=user_agent[:300],
        )
        locked.record_event(
            "consent.granted" if granted else "consent.withdrawn",
            principal,
            {
                "role": party["role"],
                "policy": policy_version,
                "method": method,
                "consentID": consent.pk,
            },
        )
    return consent


def _require_may_consent(principal: Principal, call: Call) -> bool:
    """FORBIDDEN unless a party, a callee, or the call's supervisor now; says whether the
    principal answers as that supervisor (and not as a party)."""
    if policy.is_party(principal, call) or policy.may_answer(principal, call):
        return False
    leg = supervisor_leg(call)
    if leg is not None and principal.owns(leg):
        return True
    policy.require_party_or_callee(principal, call)  # raises FORBIDDEN
    return False
