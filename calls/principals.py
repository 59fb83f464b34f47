"""Who is acting: a staff operator, an integrator's API token, an end user, or the system.

Every authenticated request and every state transition carries a Principal, so the call
records and their events can say who did what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    from calls.models import ApiToken, EndUserSession

PrincipalKind = Literal["staff", "api_token", "end_user", "system"]
Role = Literal["user", "operator", "system"]


@dataclass(frozen=True, eq=False)
class Principal:
    kind: PrincipalKind
    user: User | None = None
    api_token: ApiToken | None = None
    session: EndUserSession | None = None

    # DRF's request.user contract (throttling, permissions).
    is_authenticated = True
    is_anonymous = False

    @classmethod
    def staff(cls, user: User) -> Principal:
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

    @property
    def display_name(self) -> str:
        """What the other side of a call may see: never a staff username or a token's name
        (those are the operators' business), the end user's own chosen name."""
        if self.user is not None:
            full_name = getattr(self.user, "get_full_name", lambda: "")()
            return full_name.strip() or "Operator"
        if self.api_token is not None:
            return "Operator"
        if self.session is not None:
            return self.session.display_name or "Visitor"
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

    @property
    def party_key(self) -> PartyKey:
        """This party's identity, comparable with `party_key_of` a leg or a consent row."""
        return PartyKey(
            user_id=self.user.pk if self.user is not None else None,
            api_token_id=self.api_token.pk if self.api_token is not None else None,
            session_id=self.session.pk if self.session is not None else None,
        )

    def owns(self, row: object) -> bool:
        """Whether a leg or a consent row belongs to this very party (not just its role)."""
        return self.kind != "system" and party_key_of(row) == self.party_key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Principal) and self.pk == other.pk

    def __hash__(self) -> int:
        return hash(self.pk)


@dataclass(frozen=True)
class PartyKey:
    """One party's identity: exactly one of the three is set for a human party."""

    user_id: object = None
    api_token_id: object = None
    session_id: object = None


def party_key_of(row: object) -> PartyKey:
    """The identity of a row that has party columns (a Leg, a RecordingConsent)."""
    return PartyKey(
        user_id=getattr(row, "user_id", None),
        api_token_id=getattr(row, "api_token_id", None),
        session_id=getattr(row, "session_id", None),
    )


def staff_user(request: HttpRequest) -> User:
    """The staff member behind an admin request: never anonymous there (the admin site
    lets only active staff in), which `HttpRequest.user`'s type cannot say."""
    return cast("User", request.user)


SYSTEM = Principal("system")
