"""Revoke API tokens or end-user sessions from the command line (ops without the admin)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from calls.models import ApiToken, EndUserSession
from calls.tokens import LOOKUP_LENGTH, token_kind

PREFIX_LENGTH = 4 + LOOKUP_LENGTH


class Command(BaseCommand):
    help = (
        "Revoke credentials by the prefix the admin lists (cbk_… API tokens, cbs_… "
        "sessions) or by session id. Their open sockets close within a second (every "
        "serving process hears it through Redis; with the embedded channel layer only at "
        "their next message)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("credentials", nargs="+", help="cbk_/cbs_ prefix or session id")

    def handle(self, *args: Any, **options: Any) -> None:
        tokens, sessions = Q(pk__in=[]), Q(pk__in=[])
        for given in options["credentials"]:
            kind = token_kind(given)
            if kind == "cbk" and len(given) == PREFIX_LENGTH:
                tokens |= Q(prefix=given)
            elif kind == "cbs" and len(given) == PREFIX_LENGTH:
                sessions |= Q(prefix=given)
            else:
                try:
                    sessions |= Q(pk=uuid.UUID(given))
                except ValueError:
                    raise CommandError(
                        f"{given!r} is not a credential prefix (cbk_/cbs_ + "
                        f"{LOOKUP_LENGTH} characters) or a session id"
                    ) from None
        found = ApiToken.objects.filter(tokens).count()
        found += EndUserSession.objects.filter(sessions).count()
        if found < len(options["credentials"]):
            raise CommandError("some of these credentials do not exist; nothing revoked")
        revoked = ApiToken.objects.filter(tokens).revoke()
        revoked += EndUserSession.objects.filter(sessions).revoke()
        self.stdout.write(f"Revoked {revoked} (already revoked before: {found - revoked}).")
