"""Disposition codes in admin: added, relabelled, reordered, limited to queues, retired."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from calls.models import CallNotes, CallNotesRevision, DispositionCode


@admin.register(DispositionCode)
class DispositionCodeAdmin(admin.ModelAdmin):
    list_display = ["label", "code", "active", "ordering", "queue_list", "times_used"]
    list_editable = ["active", "ordering"]
    list_filter = ["active", "queues"]
    search_fields = ["code", "label"]
    filter_horizontal = ["queues"]
    fields = ["code", "label", "active", "ordering", "queues"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A code in use keeps its slug: integrators and reports filter by it.
        return ["code"] if obj is not None and self._used(obj) else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Calls and their history keep the codes they were given: retire (untick
        # "active") instead of deleting.
        if obj is not None and self._used(obj):
            return False
        return super().has_delete_permission(request, obj)

    @staticmethod
    def _used(code: DispositionCode) -> bool:
        return CallNotesRevision.objects.filter(disposition=code).exists()

    @admin.display(description="queues")
    def queue_list(self, code: DispositionCode) -> str:
        return ", ".join(queue.name for queue in code.queues.all()) or "every call"

    @admin.display(description="calls now")
    def times_used(self, code: DispositionCode) -> int:
        return CallNotes.objects.filter(disposition=code).count()

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("queues")
