"""Preflight reports in admin (read-only): what each caller's page found, for support."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from calls.models import PreflightReport
from calls.preflight import findings as preflight_findings


@admin.register(PreflightReport)
class PreflightReportAdmin(admin.ModelAdmin):
    list_display = ["created_at", "caller", "verdict", "summary"]
    list_filter = ["verdict", "created_at"]
    search_fields = ["session__display_name", "=session__id"]
    list_select_related = ["session"]
    fields = ["session", "created_at", "verdict", "findings_list", "report", "user_agent"]
    readonly_fields = ["session", "created_at", "verdict", "findings_list", "report", "user_agent"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # filed by callers' pages only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="caller", ordering="session__display_name")
    def caller(self, report: PreflightReport) -> str:
        return report.session.display_name or str(report.session_id)

    @admin.display(description="first finding")
    def summary(self, report: PreflightReport) -> str:
        shown = preflight_findings(report)  # stored in English, shown in the admin's language
        return shown[0] if shown else ""

    @admin.display(description="findings")
    def findings_list(self, report: PreflightReport) -> str:
        shown = ((finding,) for finding in preflight_findings(report))
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", shown))
