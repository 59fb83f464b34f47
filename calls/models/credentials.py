"""Credentials: integrators' API tokens and end users' session tokens (stored hashed)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from calls.model_signals import credentials_revoked
from calls.tokens import IssuedToken, TokenKind, digest_matches, issue_token, token_prefix

# last_used_at / last_seen_at are written at most this often, not on every request.
USAGE_WRITE_INTERVAL = timedelta(seconds=60)

_Token = TypeVar("_Token", bound="HashedTokenModel")


class TokenQuerySet(models.QuerySet[_Token]):
    def find(self, token: str) -> _Token | None:
        """The row this token belongs to (revoked/expired included), or None."""
        prefix = token_prefix(token)
        if prefix is None:
            return None
        row = self.filter(prefix=prefix).first()
        if row is None or not digest_matches(token, row.token_hash):
            return None
        return row

    def revoke(self) -> int:
        """Revoke these rows (the only way to revoke); their open sockets are told to close
        once the transaction commits (calls.revocation). Returns how many were revoked."""
        with transaction.atomic():
            pks = list(
                self.filter(revoked_at=None).select_for_update().values_list("pk", flat=True)
            )
            count = (
                self.model.objects.filter(pk__in=pks, revoked_at=None).update(
                    revoked_at=timezone.now()
                )
                if pks
                else 0
            )
            if pks:
                model = self.model
                transaction.on_commit(lambda: credentials_revoked.send(sender=model, pks=pks))
                issued = model.issued_by(pks)
                if issued is not None:
                    issued.revoke()  # same transaction: both die, or neither
        return count


class HashedTokenModel(models.Model):
    token_kind: TokenKind

    prefix = models.CharField(max_length=12, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = TokenQuerySet.as_manager()

    class Meta:
        abstract = True

    @classmethod
    def new_secret(cls) -> IssuedToken:
        return issue_token(cls.token_kind)

    def set_secret(self, issued: IssuedToken) -> None:
        self.prefix = issued.prefix
        self.token_hash = issued.digest

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> None:
        type(self).objects.filter(pk=self.pk).revoke()
        self.refresh_from_db(fields=["revoked_at"])

    @classmethod
    def issued_by(cls, pks: list[Any]) -> TokenQuerySet[Any] | None:
        """Credentials these rows issued, revoked with them (None: they issue none)."""
        return None


class ApiToken(HashedTokenModel):
    """An integrator backend's key. Acts as an operator on every call."""

    token_kind = "cbk"  # noqa: S105 (a prefix, not a secret)

    name = models.CharField(max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="api_tokens",
        editable=False,
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The recordings' listen permission for an integrator's backend (a token has no user
    # to hold `calls.listen_recording`): GET /api/recordings and their audio.
    can_listen = models.BooleanField(
        "may list and download recordings",
        default=False,
        help_text="GET /api/recordings and /api/recordings/{id}/audio (every fetch is logged)",
    )

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def create(cls, name: str, created_by: Any = None) -> tuple[ApiToken, str]:
        """Create a token; the returned secret is the only copy that will ever exist."""
        issued = cls.new_secret()
        token = cls(name=name, created_by=created_by)
        token.set_secret(issued)
        token.save()
        return token, issued.token

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= USAGE_WRITE_INTERVAL:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now

    @classmethod
    def issued_by(cls, pks: list[Any]) -> TokenQuerySet[Any] | None:
        # A leaked integrator key may have minted sessions for whoever holds it: revoking
        # the key ends them too (a session a staff user made is not touched).
        return EndUserSession.objects.filter(created_by_token__in=pks)


class EndUserSession(HashedTokenModel):
    """An end user's identity for a while: who they are and the token their page uses."""

    token_kind = "cbs"  # noqa: S105 (a prefix, not a secret)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    display_name = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Who a call from this session reaches (Voisnap's agentId): a queue's public id or
    # `echo`; "" for the default queue. Read when the session's offer starts a call.
    agent = models.CharField(max_length=100, blank=True, editable=False)
    expires_at = models.DateTimeField()
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_by_token = models.ForeignKey(
        ApiToken,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sessions",
        editable=False,
    )
    online = models.BooleanField(default=False, editable=False)
    # Open signaling sockets registered for this session (online while > 0).
    sockets = models.PositiveIntegerField(default=0, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "end-user session"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["online", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.display_name or 'anonymous'} ({str(self.pk)[:8]})"

    @classmethod
    def create(
        cls,
        *,
        ttl_seconds: int,
        display_name: str = "",
        metadata: dict[str, Any] | None = None,
        created_by_user: Any = None,
        created_by_token: ApiToken | None = None,
        agent: str = "",
    ) -> tuple[EndUserSession, str]:
        issued = cls.new_secret()
        session = cls(
            display_name=display_name,
            metadata=metadata or {},
            agent=agent,
            expires_at=timezone.now() + timedelta(seconds=ttl_seconds),
            created_by_user=created_by_user,
            created_by_token=created_by_token,
        )
        session.set_secret(issued)
        session.save()
        return session, issued.token

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at

    @property
    def is_usable(self) -> bool:
        return not self.is_expired and not self.is_revoked

    def touch(self) -> None:
        now = timezone.now()
        if self.last_seen_at is None or now - self.last_seen_at >= USAGE_WRITE_INTERVAL:
            EndUserSession.objects.filter(pk=self.pk).update(last_seen_at=now)
            self.last_seen_at = now

    def socket_opened(self) -> bool:
        """Count a registered socket; True if the session just came online."""
        return self._count_socket(+1)

    def socket_closed(self) -> bool:
        """Uncount a socket; True if the session just went offline."""
        return self._count_socket(-1)

    def _count_socket(self, delta: int) -> bool:
        with transaction.atomic():
            session = EndUserSession.objects.select_for_update().get(pk=self.pk)
            sockets = max(0, session.sockets + delta)
            online = sockets > 0
            EndUserSession.objects.filter(pk=self.pk).update(
                sockets=sockets, online=online, last_seen_at=timezone.now()
            )
        self.sockets, changed, self.online = sockets, online != session.online, online
        return changed
