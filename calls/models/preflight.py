"""Preflight reports: what an end user's page found before calling (microphone, the echo
round trip through the server, TURN), kept with their session for operators and support."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from calls.models.credentials import EndUserSession


class PreflightVerdict(models.TextChoices):
    GOOD = "good"
    WARNING = "warning"  # a call will work, perhaps poorly (RTT, jitter, loss, no TURN)
    PROBLEM = "problem"  # a call will not work (no microphone, no media through the server)


class PreflightReport(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        EndUserSession, on_delete=models.CASCADE, related_name="preflight_reports"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    verdict = models.CharField(max_length=10, choices=PreflightVerdict.choices)
    findings = models.JSONField(default=list, help_text="plain-language findings, worst first")
    report = models.JSONField(help_text="what the page measured (validated, size-capped)")
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "preflight report"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["session", "-created_at"], name="preflight_session_latest")]

    def __str__(self) -> str:
        return f"{self.verdict} at {self.created_at:%Y-%m-%d %H:%M:%S}"
