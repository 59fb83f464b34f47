"""Admin for API tokens and end-user sessions: secrets shown once, revoke, never delete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from calls.models import ApiToken, EndUserSession
from calls.models.credentials import TokenQuerySet
from calls.principals import staff_user

SECRET_ATTRIBUTE = "_callbridge_issued_secret"  # noqa: S105 (an attribute name)


class ShowSecretOnceAdmin(admin.ModelAdmin):
    """On add, the new token is rendered into the response page and kept nowhere else."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            issued = obj.new_secret()
            obj.set_secret(issued)
            setattr(request, SECRET_ATTRIBUTE, issued.token)
            self.set_creator(request, obj)
        super().save_model(request, obj, form, change)

    def set_creator(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def secret_context(self, request: HttpRequest, obj: Any, token: str) -> dict[str, Any]:
        return {}

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = getattr(request, SECRET_ATTRIBUTE, None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": obj,
            "token": token,
            "title": f"{str(self.opts.verbose_name).capitalize()} created",
            "changelist_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"
            ),
            **self.secret_context(request, obj, token),
        }
        response = TemplateResponse(request, "admin/calls/secret_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: calls and audit rows keep pointing at them

    @admin.action(description="Revoke selected", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: TokenQuerySet[Any]) -> None:
        # Through the queryset's revoke(): open sockets of these credentials close too.
        count = queryset.revoke()
        self.message_user(request, f"Revoked {count}.", messages.SUCCESS)

    actions = ["revoke"]


@admin.register(ApiToken)
class ApiTokenAdmin(ShowSecretOnceAdmin):
    list_display = [
        "name",
        "prefix",
        "can_listen",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "can_listen"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    fields = ["name", "can_listen", *readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Granting a token the listen permission is only for who holds it themselves.
        fields = list(self.readonly_fields)
        if not request.user.has_perm("calls.listen_recording"):
            fields.insert(0, "can_listen")
        return fields

    def set_creator(self, request: HttpRequest, obj: ApiToken) -> None:
        obj.created_by = staff_user(request)


@admin.register(EndUserSession)
class EndUserSessionAdmin(ShowSecretOnceAdmin):
    list_display = [
        "__str__",
        "display_name",
        "online",
        "last_seen_at",
        "expires_at",
        "revoked_at",
        "created_at",
    ]
    list_filter = ["online", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["=id", "display_name"]
    readonly_fields = [
        "id",
        "prefix",
        "online",
        "last_seen_at",
        "created_at",
        "created_by_user",
        "created_by_token",
        "agent",  # Voisnap's agentId: set by POST /api/v1/webrtc/sessions only
        "revoked_at",
    ]
    fields = ["display_name", "metadata", "expires_at", *readonly_fields]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"expires_at": timezone.now() + timedelta(seconds=settings.CALLBRIDGE_SESSION_TTL_S)}

    def set_creator(self, request: HttpRequest, obj: EndUserSession) -> None:
        obj.created_by_user = staff_user(request)

    def secret_context(
        self, request: HttpRequest, obj: EndUserSession, token: str
    ) -> dict[str, Any]:
        path = f"{reverse('enduser-page')}?token={token}"
        base = settings.CALLBRIDGE_PUBLIC_URL
        return {"link": base + path if base else request.build_absolute_uri(path)}
