"""Operators as the routing engine sees them: the availability they set, and who operates.

`availability` is the operator's own word (available / away / offline) and survives
reloads; their activity (ringing / busy / wrap_up / idle) is derived, never stored
(`calls/models/activity.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from calls.model_signals import operator_available, operator_status_changed

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from calls.principals import Principal

# The one permission that makes a staff user an operator (calls.operators explains it).
OPERATOR_PERMISSION = "calls.operate_calls"


def operator_users() -> models.QuerySet[Any]:
    """Every user who may operate: active staff holding the permission (directly, by a
    group, or as superuser). Subqueries, not joins: no duplicate rows, no DISTINCT."""
    app_label, codename = OPERATOR_PERMISSION.split(".")
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    user_model = get_user_model()
    direct = user_model.user_permissions.through.objects.filter(permission__in=permission)
    grouped = user_model.groups.through.objects.filter(group__permissions__in=permission)
    return user_model.objects.filter(is_active=True, is_staff=True).filter(
        Q(is_superuser=True)
        | Q(pk__in=direct.values("user_id"))
        | Q(pk__in=grouped.values("user_id"))
    )


class Availability(models.TextChoices):
    AVAILABLE = "available"  # takes offers
    AWAY = "away"  # logged in, takes none (break, or too many offers rang out)
    OFFLINE = "offline"  # not working


class OperatorStatus(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_status"
    )
    # Offline until the operator says otherwise: nobody is offered calls they are not
    # there to hear. The default queue's open answer keeps every operator able to answer.
    availability = models.CharField(
        max_length=16, choices=Availability.choices, default=Availability.OFFLINE
    )
    availability_changed_at = models.DateTimeField(null=True, blank=True)
    availability_changed_by = models.CharField(max_length=200, blank=True)
    last_call_ended_at = models.DateTimeField(null=True, blank=True)  # longest idle
    last_offered_at = models.DateTimeField(null=True, blank=True)  # round robin
    missed_in_a_row = models.PositiveIntegerField(default=0)
    wrap_up_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "operator status"
        verbose_name_plural = "operator statuses"
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.availability})"

    @classmethod
    def for_user(cls, user: User) -> OperatorStatus:
        """The operator's row, made on first use."""
        status, _ = cls.objects.get_or_create(user=user)
        return status

    @classmethod
    def set_availability(cls, user: User, availability: str, by: Principal) -> OperatorStatus:
        """Record the operator's availability (who set it, when). After commit:
        `operator_status_changed`, and `operator_available` when it became available."""
        availability = Availability(availability)  # ValueError for anything else
        with transaction.atomic():
            cls.objects.get_or_create(user=user)
            status = cls.objects.select_for_update().get(user=user)
            previous = status.availability
            status.availability = availability
            status.availability_changed_at = timezone.now()
            status.availability_changed_by = by.label
            if availability == Availability.AVAILABLE:
                status.missed_in_a_row = 0  # a fresh start after being set away
            status.save()
            user_id = user.pk
            transaction.on_commit(lambda: operator_status_changed.send(sender=cls, user_id=user_id))
            if availability == Availability.AVAILABLE and previous != availability:
                transaction.on_commit(lambda: operator_available.send(sender=cls, user_id=user_id))
        return status
