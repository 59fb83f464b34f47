"""Queues (members, strategy, timeouts, overflow) and operators' statuses, read-only.

Gated like the rest of the admin by Django's model permissions (view/add/change queue,
view operator status): supervisors get them, operators need none to answer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from calls import queue_stats
from calls.admin.call_admin import ReadOnlyAdmin
from calls.errors import CallbridgeError
from calls.models import (
    Activity,
    CallState,
    Leg,
    OfferOutcome,
    OperatorStatus,
    Queue,
    QueueOffer,
    operator_users,
)
from calls.models.call import OPEN_STATES


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "public_id",
        "strategy",
        "is_default",
        "waiting_now",
        "members_count",
        "overflow",
        "statistics",
    ]
    search_fields = ["name", "public_id"]
    filter_horizontal = ["members", "member_groups"]
    readonly_fields = ["is_default", "created_at", "updated_at", "statistics"]
    fieldsets = [
        (None, {"fields": ["name", "public_id", "is_default", "open_answer", "statistics"]}),
        ("Members", {"fields": ["all_operators", "members", "member_groups"]}),
        (
            "Routing",
            {"fields": ["strategy", "ring_timeout_s", "max_wait_s", "wrap_up_s"]},
        ),
        (
            "When nobody answers",
            {"fields": ["overflow", "overflow_queue", "waiting_audio", "offer_callback"]},
        ),
        ("Voicemail", {"fields": ["voicemail_greeting", "voicemail_max_s"]}),
        ("On hold", {"fields": ["hold_audio"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        return (
            super()
            .get_queryset(request)
            .annotate(_waiting=Count("calls", filter=Q(calls__state=CallState.RINGING)))
        )

    @admin.display(description="waiting now", ordering="_waiting")
    def waiting_now(self, queue: Any) -> int:
        return int(queue._waiting)

    @admin.display(description="members")
    def members_count(self, queue: Queue) -> str:
        # Only holders of the operator permission count (Queue.member_users).
        count = queue.member_users().count()
        return f"all operators ({count})" if queue.all_operators else str(count)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "voicemail_max_s" and field is not None:
            # Left out of the post (a form from before voicemail): the model's default.
            field.required = False
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "members":
            kwargs["queryset"] = operator_users().order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="statistics")
    def statistics(self, queue: Queue) -> str:
        if queue.pk is None:
            return "—"
        url = reverse("admin:calls_queue_stats", args=[queue.pk])
        return format_html('<a href="{}">today\'s statistics</a>', url)

    def get_urls(self) -> list[Any]:
        stats = path(
            "<int:queue_id>/stats/",
            self.admin_site.admin_view(self.stats_view),
            name="calls_queue_stats",
        )
        return [stats, *super().get_urls()]

    def stats_view(self, request: HttpRequest, queue_id: int) -> HttpResponse:
        """The queue's statistics over a period (calls.queue_stats), for who may view it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        queue = get_object_or_404(Queue, pk=queue_id)
        since, until = request.GET.get("since", ""), request.GET.get("until", "")
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{queue}: statistics",
            "queue": queue,
            "since": since,
            "until": until,
            "time_zone": settings.TIME_ZONE,
            "changelist_url": reverse("admin:calls_queue_changelist"),
            "change_url": reverse("admin:calls_queue_change", args=[queue.pk]),
        }
        try:
            period = queue_stats.parse_period(since, until)
        except CallbridgeError as error:
            context["error"] = error.message
            return TemplateResponse(request, "admin/calls/queue_stats.html", context, status=400)
        context["stats"] = queue_stats.queue_stats([queue], period)[0]
        context["operators"] = queue_stats.operator_stats(period, queue)
        return TemplateResponse(request, "admin/calls/queue_stats.html", context)

    def has_delete_permission(self, request: HttpRequest, obj: Queue | None = None) -> bool:
        # Calls that named it keep naming it; the default queue is where calls go.
        if obj is not None and (obj.is_default or obj.calls.exists()):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(OperatorStatus)
class OperatorStatusAdmin(ReadOnlyAdmin):
    list_display = [
        "user",
        "availability",
        "activity",
        "availability_changed_at",
        "availability_changed_by",
        "last_call_ended_at",
        "missed_in_a_row",
    ]
    list_filter = ["availability"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "availability",
        "availability_changed_at",
        "availability_changed_by",
        "last_call_ended_at",
        "last_offered_at",
        "missed_in_a_row",
        "wrap_up_until",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OperatorStatus]:
        # The activity of every row in the list's one query (calls.models.activity's rules).
        return (
            super()
            .get_queryset(request)
            .annotate(
                _ringing=Exists(
                    QueueOffer.objects.filter(
                        operator=OuterRef("user_id"), outcome=OfferOutcome.PENDING
                    )
                ),
                _busy=Exists(
                    Leg.objects.filter(
                        user=OuterRef("user_id"), left_at=None, call__state__in=OPEN_STATES
                    )
                ),
            )
        )

    @admin.display(description="activity")
    def activity(self, status: Any) -> str:
        if status._ringing:
            return Activity.RINGING
        if status._busy:
            return Activity.BUSY
        if status.wrap_up_until is not None and status.wrap_up_until > timezone.now():
            return Activity.WRAP_UP
        return Activity.IDLE
