"""Who may operate: staff holding the one explicit operator permission (superusers hold all).

Being staff only opens the admin; answering and placing calls (REST with a staff cookie,
/ws/operator, the dashboard) needs `calls.operate_calls`, normally through the
"Operators" group the migrations create.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

from calls.models.operator_status import OPERATOR_PERMISSION, operator_users

__all__ = ["OPERATOR_PERMISSION", "is_operator_user", "operator_users", "operators_group"]
OPERATORS_GROUP_NAME = "Operators"


def is_operator_user(user: Any) -> bool:
    """An active staff user holding the operator permission (reads the database)."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(OPERATOR_PERMISSION)
    )


def operators_group() -> Group:
    """The "Operators" group with the operator permission (made again if it was deleted)."""
    app_label, codename = OPERATOR_PERMISSION.split(".")
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    group, _ = Group.objects.get_or_create(name=OPERATORS_GROUP_NAME)
    group.permissions.add(permission)
    return group
