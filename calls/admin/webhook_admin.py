"""Admin for webhooks: endpoints (secret generated and shown once; URL and filter checked),
the delivery log with every attempt (read-only) and its "redeliver" action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from calls.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from calls.webhooks import outbox, signing

SECRET_ATTRIBUTE = "_callbridge_webhook_secret"  # noqa: S105 (an attribute name)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_filter", "enabled"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        problem = outbox.url_problem(url, settings.CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_event_filter(self) -> str:
        text: str = self.cleaned_data["event_filter"]
        try:
            return "\n".join(signing.parse_filter(text))
        except ValueError as bad:
            raise forms.ValidationError(str(bad)) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["__str__", "url", "enabled", "event_filter", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["created_at"]
    fields = ["url", "description", "event_filter", "enabled", "created_at"]
    actions = ["rotate_secret"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.secret = signing.new_secret()
            setattr(request, SECRET_ATTRIBUTE, obj.secret)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, SECRET_ATTRIBUTE, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret)

    def _secret_page(self, request: HttpRequest, obj: Any, secret: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": obj,
            "token": secret,
            "secret_kind": "signing secret",
            "title": "Webhook endpoint saved",
            "changelist_url": reverse("admin:calls_webhookendpoint_changelist"),
        }
        response = TemplateResponse(request, "admin/calls/secret_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Rotate the signing secret (shown once)", permissions=["change"])
    def rotate_secret(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Rotate one endpoint at a time.", messages.ERROR)
            return None
        endpoint = queryset.get()
        endpoint.secret = signing.new_secret()
        endpoint.save(update_fields=["secret"])
        return self._secret_page(request, endpoint, endpoint.secret)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("started_at", "status_code", "duration_ms", "error")
    readonly_fields = ("started_at", "status_code", "duration_ms", "error")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "message_id",
        "endpoint",
        "event_name",
        "call",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["state", "endpoint"]
    search_fields = ["=message_id", "=call__id"]
    list_select_related = ["endpoint", "event", "call"]
    fields = (
        "message_id",
        "endpoint",
        "event",
        "call",
        "state",
        "attempts",
        "last_status_code",
        "created_at",
        "next_attempt_at",
        "retry_until",
        "leased_until",
        "delivered_at",
    )
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    @admin.display(description="event")
    def event_name(self, obj: WebhookDelivery) -> str:
        return obj.event.name

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the log stays; deleting an endpoint removes its deliveries

    @admin.action(description="Redeliver selected (same webhook-id)", permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = outbox.redeliver(queryset)
        self.message_user(request, f"Queued {count} for redelivery.", messages.SUCCESS)
