"""Who is acting: a staff operator, an integrator's API token, an end user, or the system.

Every authenticated request and every state transition carries a Principal, so the call
records and their events can say who did what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from calls.models import ApiToken, EndUserSession

PrincipalKind = Literal["staff", "api_token", "end_user", "system"]
Role = Literal["user", "operator", "system"]


@dataclass(frozen=True, eq=False)
class Principal:
    kind: PrincipalKind
    user: AbstractBaseUser | None = None
    api_token: ApiToken | None = None
    session: EndUserSession | None = None

    # DRF's request.user contract (throttling, permissions).
    is_authenticated = True
    is_anonymous = False

    @classmethod
    def staff(cls, user: AbstractBaseUser) -> Principal:
        return cls("staff", user=user)

    @classmethod
    def for_api_token(cls, token: ApiToken) -> Principal:
        return cls("api_token", api_token=token)

    @classmethod
    def end_user(cls, session: EndUserSession) -> Principal:
        return cls("end_user", session=session)

    @property
    def role(self) -> Role:
        if self.kind == "end_user":
            return "user"
        if self.kind == "system":
            return "system"
        return "operator"

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def pk(self) -> str:
        """Stable identity across kinds (throttling keys, TURN usernames)."""
        return f"{self.kind}-{self._ident}"

    @property
    def _ident(self) -> str:
        if self.user is not None:
            return str(self.user.pk)
        if self.api_token is not None:
            return self.api_token.prefix
        if self.session is not None:
            return str(self.session.pk)
        return "callbridge"

    @property
    def label(self) -> str:
        """Human-readable, kept in audit rows even if the party is later deleted."""
        if self.user is not None:
            return f"operator {self.user.get_username()}"
        if self.api_token is not None:
            return f"api token {self.api_token.name} ({self.api_token.prefix})"
        if self.session is not None:
            name = self.session.display_name or "anonymous"
            return f"end user {name} ({str(self.session.pk)[:8]})"
        return "system"

    def party_fields(self) -> dict[str, object]:
        """The columns that say who a leg or a consent belongs to."""
        return {
            "role": self.role,
            "session": self.session,
            "user": self.user,
            "api_token": self.api_token,
            "party": self.label,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Principal) and self.pk == other.pk

    def __hash__(self) -> int:
        return hash(self.pk)


SYSTEM = Principal("system")
