"""Make a demo operator login when no staff user exists (used by `make run`)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from calls.operators import OPERATORS_GROUP_NAME, operators_group

DEMO_USERNAME = "operator"


class Command(BaseCommand):
    help = (
        "Create a staff superuser 'operator' (in the Operators group) with a random password "
        "if there is no staff user."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://localhost:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        if users.filter(is_staff=True, is_active=True).exists():
            self.stdout.write(
                f"Operator login: {options['url']} (an operator account already exists; "
                f"reset a password with: .venv/bin/python manage.py changepassword <username>; "
                f"operators need the {OPERATORS_GROUP_NAME!r} group)"
            )
            return
        password = secrets.token_urlsafe(12)
        user = users.create_superuser(username=DEMO_USERNAME, email="", password=password)
        # Explicit, so the login stays an operator if its superuser status is taken away.
        user.groups.add(operators_group())
        self.stdout.write(self.style.SUCCESS("Demo operator created."))
        self.stdout.write(f"  Log in at   {options['url']}")
        self.stdout.write(f"  username    {DEMO_USERNAME}")
        self.stdout.write(f"  password    {password}")
        self.stdout.write("  (shown once; change it with: manage.py changepassword operator)")
