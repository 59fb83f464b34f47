"""Recording consents: who agreed (or withdrew) to be recorded, to which text, how, when."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from calls.models.audit_chain import ChainedModel
from calls.models.call import Call, LegRole
from calls.models.credentials import ApiToken, EndUserSession

# Links the database clears when a credential or user is deleted: who it was is `party`.
_CLEARED = "set to NULL when the credential or user is deleted; `party` keeps who"


class ConsentMethod(models.TextChoices):
    PAGE = "page", "end-user page"
    DASHBOARD = "dashboard", "operator dashboard"
    API = "api", "API"
    VOICEMAIL = "voicemail", "leaving a voicemail (after its notice)"


class RecordingConsent(ChainedModel):
    """One party's answer for one call. The latest row per party is its current answer."""

    CHAIN_FIELDS = (
        "call_id",
        "role",
        "party",
        "granted",
        "policy_version",
        "text_sha256",
        "method",
        "created_at",
        "ip",
        "user_agent",
    )
    CHAIN_UNHASHED = {
        "session_id": _CLEARED,
        "user_id": _CLEARED,
        "api_token_id": _CLEARED,
    }

    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="consents")
    role = models.CharField(max_length=16, choices=LegRole.choices)
    session = models.ForeignKey(
        EndUserSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    party = models.CharField(max_length=200)
    granted = models.BooleanField()
    policy_version = models.CharField(max_length=32)
    text_sha256 = models.CharField("SHA-256 of the text shown", max_length=64)
    method = models.CharField(max_length=16, choices=ConsentMethod.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "recording consent"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        answer = "granted" if self.granted else "withdrawn"
        return f"{self.party}: {answer} (policy {self.policy_version})"
