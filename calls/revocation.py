"""A credential that dies takes its sockets with it, in every serving process.

Each long-lived socket listens on one channel-layer group per credential it stands on
(an API token, an end-user session, a staff user, a staff login's Django session). Whatever
can end a credential — a revocation by any path, a logout, a staff user deactivated,
demoted, deleted or given a new password, a permission taken away — sends
`credential.check` to those groups once its transaction commits; each socket then reads
its credential's current standing and closes itself if it is dead. Expiry needs no push:
sockets arm a timer at their credential's `until`.

Group names carry no secret and no Django session key: they are keyed digests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.utils.crypto import constant_time_compare, salted_hmac

from callbridge.channel_layer import configured_layer
from calls.events import send_from_any_thread
from calls.model_signals import credentials_revoked
from calls.models import ApiToken, EndUserSession
from calls.operators import is_operator_user
from calls.principals import Principal

logger = logging.getLogger(__name__)

CHECK_MESSAGE = {"type": "credential.check"}


@dataclass(frozen=True)
class Standing:
    """A credential's current state: dead when `reason` says why; else alive `until`."""

    reason: str = ""
    until: datetime | None = None

    @property
    def alive(self) -> bool:
        return not self.reason


# --- group names --------------------------------------------------------------------------
def credential_group(kind: str, ident: Any) -> str:
    digest = salted_hmac("calls.revocation.group", f"{kind}:{ident}").hexdigest()[:40]
    return f"credential.{digest}"


def principal_groups(principal: Principal) -> list[str]:
    if principal.api_token is not None:
        return [credential_group("api_token", principal.api_token.pk)]
    if principal.session is not None:
        return [credential_group("end_user", principal.session.pk)]
    return []


def staff_groups(user_pk: Any, session_key: str) -> list[str]:
    return [credential_group("staff_user", user_pk), credential_group("staff_login", session_key)]


# --- current standing (database reads: call from sync code) --------------------------------
def principal_standing(principal: Principal) -> Standing:
    """An API token's or end-user session's state as stored now."""
    if principal.api_token is not None:
        token = ApiToken.objects.filter(pk=principal.api_token.pk).only("revoked_at").first()
        if token is None or token.is_revoked:
            return Standing("API token revoked")
        return Standing()
    if principal.session is not None:
        session = (
            EndUserSession.objects.filter(pk=principal.session.pk)
            .only("revoked_at", "expires_at")
            .first()
        )
        if session is None or session.is_revoked:
            return Standing("Session token revoked")
        if session.is_expired:
            return Standing("Session token expired")
        return Standing(until=session.expires_at)
    return Standing("Auth token required")


def staff_standing(session_key: str | None, user_pk: Any) -> Standing:
    """Whether a staff login (one browser's Django session) is still an operator's.

    Read as Django's auth.get_user reads it on each request — the session must exist, name
    the same user through a configured backend, and carry the user's current session hash
    (a password change ends the other logins) — but read-only: get_user would flush a
    session whose hash does not match, and this may run in the instant between a password
    change and Django updating the changer's own session.
    """
    if not session_key:
        return Standing("Staff login required")
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    backend_path = data.get(auth.BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS or auth.SESSION_KEY not in data:
        return Standing("Staff login ended")
    user_model = auth.get_user_model()
    user_id = user_model._meta.pk.to_python(data[auth.SESSION_KEY])
    user = auth.load_backend(backend_path).get_user(user_id)
    if user is None or user.pk != user_pk:
        return Standing("Staff login ended")
    session_hash = data.get(auth.HASH_SESSION_KEY) or ""
    if not any(
        constant_time_compare(session_hash, user_hash) for user_hash in _session_hashes(user)
    ):
        return Standing("Staff login ended")
    if not is_operator_user(user):
        return Standing("This login may not operate calls")
    return Standing(until=_stored_expiry(store, session_key))


def _stored_expiry(store: Any, session_key: str) -> datetime | None:
    """When a database-backed login expires (Django's default engines); None otherwise:
    such a login is then re-read at its next push or message only."""
    model = getattr(store, "model", None)  # db and cached_db stores name their table
    if model is None:
        return None
    row = model.objects.filter(session_key=session_key).values_list("expire_date").first()
    return row[0] if row else None


def _session_hashes(user: Any) -> list[str]:
    """The user's session hash under SECRET_KEY and each SECRET_KEY_FALLBACKS (as Django)."""
    return [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]


# --- pushes ----------------------------------------------------------------------------------
def ask_to_check(groups: Iterable[str], ended: str = "") -> None:
    """Once the current transaction commits, every socket in `groups` re-checks (or, with
    `ended`, closes at once: for facts a re-read could race, such as a logout pushed
    before Django deletes the session)."""
    targets = sorted(set(groups))
    if targets:
        transaction.on_commit(lambda: _send(targets, ended))


def _send(groups: list[str], ended: str = "") -> None:
    message = {**CHECK_MESSAGE, "ended": ended} if ended else CHECK_MESSAGE

    async def send() -> None:
        layer = configured_layer()
        for group in groups:
            await layer.group_send(group, dict(message))

    try:
        send_from_any_thread(send)
    except Exception:
        logger.exception("could not publish a credential check")


def _user_groups(user_pks: Iterable[Any]) -> list[str]:
    return [credential_group("staff_user", pk) for pk in user_pks]


# --- receivers -----------------------------------------------------------------------------
def _on_revoked(sender: type, pks: list[Any], **kwargs: Any) -> None:
    kind = "api_token" if sender is ApiToken else "end_user"
    _send([credential_group(kind, pk) for pk in pks])  # sent after commit already


def _on_credential_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    # An admin edit may revoke or shorten `expires_at`; sockets re-read and re-arm.
    if not created:
        kind = "api_token" if sender is ApiToken else "end_user"
        ask_to_check([credential_group(kind, instance.pk)])


def _on_user_saved(sender: type, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every login saves last_login; nothing a socket stands on changed
    ask_to_check(_user_groups([instance.pk]))


def _on_user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    ask_to_check(_user_groups([instance.pk]))


def _on_logged_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        # Sent before Django flushes the session: a re-read now would find it alive.
        ask_to_check([credential_group("staff_login", session_key)], ended="Staff login ended")


def _on_user_memberships(
    sender: type, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """User.groups / User.user_permissions changed, from either side."""
    if not action.startswith("pre_"):
        return  # who is affected is known before the change (a clear empties pk_set)
    if not reverse:
        ask_to_check(_user_groups([instance.pk]))
        return
    users = auth.get_user_model().objects
    related = "groups" if isinstance(instance, Group) else "user_permissions"
    if action == "pre_clear":
        affected = users.filter(**{related: instance})
    else:
        affected = users.filter(pk__in=pk_set or [])
    ask_to_check(_user_groups(affected.values_list("pk", flat=True)))


def _on_group_permissions(
    sender: type, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    if not action.startswith("pre_"):
        return
    if not reverse:
        group_ids = [instance.pk]
    elif action == "pre_clear":
        group_ids = list(instance.group_set.values_list("pk", flat=True))
    else:
        group_ids = list(pk_set or [])
    members = auth.get_user_model().objects.filter(groups__pk__in=group_ids)
    ask_to_check(_user_groups(members.values_list("pk", flat=True).distinct()))


def _on_group_deleted(sender: type, instance: Group, **kwargs: Any) -> None:
    ask_to_check(_user_groups(instance.user_set.values_list("pk", flat=True)))


def connect_receivers() -> None:
    user_model = auth.get_user_model()
    uid = "calls.revocation."
    credentials_revoked.connect(_on_revoked, sender=ApiToken, dispatch_uid=uid + "tokens")
    credentials_revoked.connect(_on_revoked, sender=EndUserSession, dispatch_uid=uid + "sessions")
    post_save.connect(_on_credential_saved, sender=ApiToken, dispatch_uid=uid + "token-saved")
    post_save.connect(
        _on_credential_saved, sender=EndUserSession, dispatch_uid=uid + "session-saved"
    )
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid=uid + "user-saved")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid=uid + "user-deleted")
    user_logged_out.connect(_on_logged_out, dispatch_uid=uid + "logout")
    for through in (user_model.groups.through, user_model.user_permissions.through):
        m2m_changed.connect(
            _on_user_memberships, sender=through, dispatch_uid=uid + through.__name__
        )
    m2m_changed.connect(
        _on_group_permissions, sender=Group.permissions.through, dispatch_uid=uid + "group-perms"
    )
    pre_delete.connect(_on_group_deleted, sender=Group, dispatch_uid=uid + "group-deleted")
