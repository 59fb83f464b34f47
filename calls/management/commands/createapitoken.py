"""Create an integrator API token and print its secret (the only time it is shown)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from calls.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token NAME; prints the secret once (only its hash is stored)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="what the token is for, e.g. 'crm-backend'")
        parser.add_argument("--user", help="username recorded as the token's creator")
        parser.add_argument(
            "--quiet", action="store_true", help="print only the token (for scripts)"
        )
        parser.add_argument(
            "--can-listen",
            action="store_true",
            help="may list and download recordings (GET /api/recordings; every fetch logged)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1 to 100 characters")
        creator = None
        if options["user"]:
            creator = get_user_model().objects.filter(username=options["user"]).first()
            if creator is None:
                raise CommandError(f"no user named {options['user']!r}")
        token, secret = ApiToken.create(name, created_by=creator)
        if options["can_listen"]:
            ApiToken.objects.filter(pk=token.pk).update(can_listen=True)
        if options["quiet"]:
            self.stdout.write(secret)
            return
        self.stdout.write(f"API token {token.name!r} created ({token.prefix}…).")
        self.stdout.write("Copy it now, it will not be shown again:")
        self.stdout.write(self.style.SUCCESS(secret))
