"""The end-user page's branding in admin: one row, a validated logo, an accent colour whose
contrast passes WCAG AA, and a consent notice that keeps its version and hash."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from calls.branding import LOGO_MAX_BYTES, validate_logo
from calls.consent import consent_text_sha256, current_notice
from calls.contrast import accent_problem
from calls.models import Branding
from calls.models.branding import SINGLETON_ID
from calls.principals import staff_user


class BrandingForm(forms.ModelForm):
    logo_upload = forms.FileField(
        label="logo",
        required=False,
        help_text=f"PNG, JPEG or WebP, at most {LOGO_MAX_BYTES // 1024} KB and 1024 pixels a side",
    )
    remove_logo = forms.BooleanField(required=False)

    class Meta:
        model = Branding
        fields = [
            "display_name",
            "accent_color",
            "welcome_text",
            "waiting_text",
            "consent_text",
            "consent_policy_version",
        ]
        widgets = {"accent_color": forms.TextInput(attrs={"type": "color"})}

    def clean_accent_color(self) -> str:
        colour: str = self.cleaned_data["accent_color"].lower()
        problem = accent_problem(colour)
        if problem:
            raise forms.ValidationError(problem)
        return colour

    def clean_logo_upload(self) -> Any:
        upload = self.cleaned_data.get("logo_upload")
        if upload is None:
            return None
        if upload.size > LOGO_MAX_BYTES:
            raise forms.ValidationError(
                f"The logo is {upload.size // 1024} KB; at most {LOGO_MAX_BYTES // 1024} KB."
            )
        content = upload.read()
        self.logo_type = validate_logo(content)
        return content

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        text = (data.get("consent_text") or "").strip()
        version = (data.get("consent_policy_version") or "").strip()
        data["consent_text"], data["consent_policy_version"] = text, version
        if bool(text) != bool(version):
            raise forms.ValidationError(
                "A consent notice and its policy version go together: set both or neither."
            )
        # People consented to a text: a different text under the same version would make
        # their consents look like consents to it.
        before = current_notice()
        after_text = text or None
        if after_text is not None and after_text != before.text and version == before.version:
            self.add_error(
                "consent_policy_version",
                f"The notice changed: give it a new policy version (now {before.version!r}).",
            )
        return data


@admin.register(Branding)
class BrandingAdmin(admin.ModelAdmin):
    form = BrandingForm
    fieldsets = [
        (None, {"fields": ["display_name", "logo_preview", "logo_upload", "remove_logo"]}),
        ("Look", {"fields": ["accent_color"]}),
        ("Texts", {"fields": ["welcome_text", "waiting_text"]}),
        (
            "Recording consent notice",
            {
                "fields": ["consent_text", "consent_policy_version", "consent_sha256"],
                "description": "Empty: the settings' notice (CALLBRIDGE_CONSENT_TEXT and "
                "CALLBRIDGE_CONSENT_POLICY_VERSION). Consents given to an earlier version "
                "no longer count.",
            },
        ),
        ("Changes", {"fields": ["updated_at", "updated_by"]}),
    ]
    readonly_fields = ["logo_preview", "consent_sha256", "updated_at", "updated_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not Branding.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # emptied fields fall back to the defaults: nothing to delete

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # One row: the list is its form.
        return HttpResponseRedirect(reverse("admin:calls_branding_change", args=[SINGLETON_ID]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if object_id == str(SINGLETON_ID) and self.has_view_permission(request):
            Branding.objects.get_or_create(pk=SINGLETON_ID)  # the defaults, to edit
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="logo")
    def logo_preview(self, brand: Branding) -> str:
        if not brand.logo_sha256:
            return "—"
        url = f"{reverse('enduser-logo')}?v={brand.logo_sha256[:16]}"
        return format_html('<img src="{}" alt="the current logo" style="max-height:4rem">', url)

    @admin.display(description="notice SHA-256 (recorded with each consent)")
    def consent_sha256(self, brand: Branding) -> str:
        return consent_text_sha256()

    def save_model(self, request: HttpRequest, obj: Branding, form: Any, change: bool) -> None:
        if form.cleaned_data.get("logo_upload") is not None:
            obj.set_logo(form.cleaned_data["logo_upload"], form.logo_type)
        elif form.cleaned_data.get("remove_logo"):
            obj.clear_logo()
        obj.updated_at = timezone.now()
        obj.updated_by = staff_user(request)
        super().save_model(request, obj, form, change)
