"""The recording-consent policy: what counts, who is missing, recording an answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from calls import policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, ConsentMethod, LegRole, RecordingConsent
from calls.principals import Principal

# Which ways of consenting each kind of party may claim.
METHODS_BY_KIND = {
    "end_user": {ConsentMethod.PAGE, ConsentMethod.API},
    "staff": {ConsentMethod.DASHBOARD, ConsentMethod.API},
    "api_token": {ConsentMethod.API},
}


def consent_text_sha256() -> str:
    return hashlib.sha256(settings.CALLBRIDGE_CONSENT_TEXT.encode()).hexdigest()


def required_roles(call: Call) -> set[str]:
    mode = settings.CALLBRIDGE_RECORDING_CONSENT
    if mode == "none":
        return set()
    if mode == "user":
        return {LegRole.USER} & call.media_roles
    return set(call.media_roles)


def current_consents(call: Call) -> dict[str, RecordingConsent]:
    """Each party's latest answer (rows are in time order: later ones win)."""
    latest: dict[str, RecordingConsent] = {}
    # Sorted here, not by the query: lists prefetch every call's consents at once.
    for consent in sorted(call.consents.all(), key=lambda c: (c.created_at, c.pk)):
        latest[consent.role] = consent
    return latest


def _counts(consent: RecordingConsent | None) -> bool:
    return (
        consent is not None
        and consent.granted
        and consent.policy_version == settings.CALLBRIDGE_CONSENT_POLICY_VERSION
        and consent.text_sha256 == consent_text_sha256()
    )


@dataclass(frozen=True)
class ConsentStatus:
    policy: str
    version: str
    required: list[str]
    missing: list[str]
    relied_on: list[RecordingConsent]


def consent_status(call: Call) -> ConsentStatus:
    latest = current_consents(call)
    required = sorted(required_roles(call))
    return ConsentStatus(
        policy=settings.CALLBRIDGE_RECORDING_CONSENT,
        version=settings.CALLBRIDGE_CONSENT_POLICY_VERSION,
        required=required,
        missing=[role for role in required if not _counts(latest.get(role))],
        relied_on=[latest[role] for role in required if _counts(latest.get(role))],
    )


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
    """Record the principal's own consent (or withdrawal) for `call`."""
    policy.require_party(principal, call)
    if policy_version != settings.CALLBRIDGE_CONSENT_POLICY_VERSION:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            f"policy {policy_version!r} is not the current consent policy "
            f"({settings.CALLBRIDGE_CONSENT_POLICY_VERSION!r}): show the current text",
        )
    if method not in METHODS_BY_KIND.get(principal.kind, set()):
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"method {method!r} is not available to you"
        )
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        if not locked.is_open:
            raise CallStateError(f"the call is {locked.state}")
        consent = RecordingConsent.objects.create(
            call=locked,
            **principal.party_fields(),
            granted=granted,
            policy_version=policy_version,
            text_sha256=consent_text_sha256(),
            method=method,
            ip=ip,
            user_agent=user_agent[:300],
        )
        locked._record(
            "consent.granted" if granted else "consent.withdrawn",
            principal,
            {
                "role": principal.role,
                "policy": policy_version,
                "method": method,
                "consentID": consent.pk,
            },
        )
    return consent
