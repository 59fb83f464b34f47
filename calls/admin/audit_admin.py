"""The audit chains' heads, read-only: how many rows each chain holds and its last hash."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from calls.models import AuditChainHead


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(admin.ModelAdmin):
    """Written only by the sealer. `manage.py verify_audit` walks the chains; the anchor it
    prints (chain:rows:hash) is what this page shows, to copy somewhere off this host."""

    list_display = ["chain", "seq", "hash", "updated_at"]
    readonly_fields = ["chain", "seq", "hash", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
