"""The staff member behind an admin request."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def staff_user(request: HttpRequest) -> User:
    """`request.user` in an admin view: never anonymous there (the admin site lets only
    active staff in), which `HttpRequest.user`'s type cannot say."""
    return cast("User", request.user)
