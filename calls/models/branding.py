"""The end-user page's branding: one row for the deployment, edited in admin.

One row, not one per integrator: callbridge has no integrator record (sessions are made by
API tokens, the page is framed by any configured origin), so one brand is what it can show
consistently. The logo is kept in the row (a few hundred KB at most), not under
MEDIA_ROOT: that directory holds recordings and is never served.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

DEFAULT_ACCENT = "#1f6feb"
SINGLETON_ID = 1


class Branding(models.Model):
    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    display_name = models.CharField(
        max_length=80, blank=True, help_text="the page's heading and title (empty: Talk to us)"
    )
    accent_color = models.CharField(
        "accent colour",
        max_length=7,
        default=DEFAULT_ACCENT,
        help_text="#rrggbb: buttons and borders; white text on it must pass WCAG AA (4.5:1)",
    )
    welcome_text = models.CharField(
        max_length=300, blank=True, help_text="shown under the greeting before a call"
    )
    waiting_text = models.CharField(
        max_length=300, blank=True, help_text="shown while the call rings or waits in a queue"
    )
    consent_text = models.TextField(
        "consent notice",
        max_length=2000,
        blank=True,
        help_text="what people agree to when they consent to be recorded "
        "(empty: CALLBRIDGE_CONSENT_TEXT); a new text needs a new policy version",
    )
    consent_policy_version = models.CharField(
        max_length=40,
        blank=True,
        help_text="the notice's version (empty: CALLBRIDGE_CONSENT_POLICY_VERSION); "
        "consents given to another version no longer count",
    )
    logo = models.BinaryField(blank=True, default=b"", editable=False)
    logo_type = models.CharField(max_length=20, blank=True, editable=False)
    logo_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        verbose_name = verbose_name_plural = "branding"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id=SINGLETON_ID), name="branding_is_a_singleton"
            ),
            models.CheckConstraint(
                condition=(models.Q(consent_text="") & models.Q(consent_policy_version=""))
                | (~models.Q(consent_text="") & ~models.Q(consent_policy_version="")),
                name="branding_consent_text_and_version_together",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or "Branding"

    @classmethod
    def current(cls) -> Branding:
        """The row (unsaved defaults until an admin saves it)."""
        return cls.objects.filter(pk=SINGLETON_ID).first() or cls()

    def set_logo(self, content: bytes, content_type: str) -> None:
        self.logo = content
        self.logo_type = content_type
        self.logo_sha256 = hashlib.sha256(content).hexdigest()

    def clear_logo(self) -> None:
        self.logo, self.logo_type, self.logo_sha256 = b"", "", ""
