"""Callback requests: read-only list with filters and each request's history; supervisors
(the change permission) mark them done or cancelled, as operators do on the dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from calls import callbacks
from calls.errors import CallbridgeError
from calls.models import CallbackRequest, CallbackState, CallEvent
from calls.principals import Principal, staff_user


@admin.register(CallbackRequest)
class CallbackRequestAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "queue",
        "state",
        "requested_at",
        "attempts",
        "handled_by_label",
        "handled_at",
        "short_note",
    ]
    list_filter = ["state", "queue", "requested_at"]
    search_fields = ["display_name", "note", "=id", "=call__id", "=session__id"]
    date_hierarchy = "requested_at"
    actions = ["mark_done", "mark_cancelled"]
    fields = readonly_fields = (
        "id",
        "state",
        "display_name",
        "note",
        "queue",
        "original_call",
        "session",
        "requested_at",
        "attempts",
        "handled_by_label",
        "handled_at",
        "latest_call_back",
        "history",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[CallbackRequest]:
        return super().get_queryset(request).select_related("queue", "session", "handled_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # callers ask for them

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # their history is the calls' timeline

    @admin.display(description="note")
    def short_note(self, request: CallbackRequest) -> str:
        return request.note if len(request.note) <= 60 else request.note[:59] + "…"

    @admin.display(description="call")
    def original_call(self, request: CallbackRequest) -> str:
        url = reverse("admin:calls_call_change", args=[request.call_id])
        return format_html('<a href="{}">{}</a>', url, str(request.call_id)[:8])

    @admin.display(description="latest call back")
    def latest_call_back(self, request: CallbackRequest) -> str:
        if request.callback_call_id is None:
            return "—"
        url = reverse("admin:calls_call_change", args=[request.callback_call_id])
        return format_html('<a href="{}">{}</a>', url, str(request.callback_call_id)[:8])

    @admin.display(description="history")
    def history(self, request: CallbackRequest) -> str:
        events = CallEvent.objects.filter(
            call_id=request.call_id, name__startswith="callback."
        ).order_by("created_at", "id")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.name,
                    event.actor,
                    event.data.get("callback", {}).get("state", ""),
                )
                for event in events
            ),
        )
        return format_html(
            "<table><tr><th>when</th><th>event</th><th>by</th><th>state</th></tr>{}</table>",
            rows,
        )

    def _close(self, request: HttpRequest, queryset: QuerySet[Any], outcome: str) -> None:
        who = Principal.staff(staff_user(request))
        closed = 0
        for pending in queryset.filter(state__in=[CallbackState.OPEN, CallbackState.CALLING]):
            try:
                callbacks.close(who, str(pending.pk), outcome)
                closed += 1
            except CallbridgeError:
                continue  # closed meanwhile
        self.message_user(request, f"Marked {closed} request(s) {outcome}.", messages.SUCCESS)

    @admin.action(description="Mark selected requests done", permissions=["change"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._close(request, queryset, CallbackState.DONE)

    @admin.action(description="Mark selected requests cancelled", permissions=["change"])
    def mark_cancelled(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._close(request, queryset, CallbackState.CANCELLED)
