"""Branding in admin: contrast (pure), the logo's validation and cap, the page's CSS
variables and texts, and a consent notice that keeps its version and SHA-256."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from calls.branding import LOGO_MAX_BYTES
from calls.contrast import (
    DARK_BACKGROUND,
    NON_TEXT_MINIMUM,
    TEXT_MINIMUM,
    WHITE,
    accent_problem,
    contrast,
    outline_accent,
    readable_accent,
)
from calls.models import Branding, Call, EndUserSession, RecordingConsent
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

CHANGE_URL = "/admin/calls/branding/1/change/"


def test_it_measures_contrast_as_wcag_does() -> None:
    assert contrast("#000000", WHITE) == pytest.approx(21)
    assert contrast(WHITE, "#000000") == contrast("#000000", WHITE)
    assert contrast("#767676", WHITE) == pytest.approx(4.54, abs=0.01)  # the classic AA grey
    assert contrast("#777777", WHITE) < TEXT_MINIMUM
    with pytest.raises(ValueError, match="not a #rrggbb"):
        contrast("red", WHITE)


@pytest.mark.parametrize("colour", ["#ffcc00", "#ffffff", "#00ff00", "#777777", "#FF8800"])
def test_it_darkens_a_failing_accent_only_as_far_as_it_must(colour: str) -> None:
    assert accent_problem(colour)
    fixed = readable_accent(colour)
    assert contrast(fixed, WHITE) >= TEXT_MINIMUM
    assert contrast(fixed, WHITE) < TEXT_MINIMUM + 0.2  # the nearest, not black
    assert accent_problem(fixed) == ""
    assert fixed in accent_problem(colour)  # the refusal suggests it


@pytest.mark.parametrize("colour", ["#1f6feb", "#000080", "#000000", "#767676"])
def test_it_keeps_a_passing_accent_and_lightens_its_outline_on_dark(colour: str) -> None:
    assert accent_problem(colour) == "" and readable_accent(colour) == colour
    outline = outline_accent(colour)
    assert contrast(outline, DARK_BACKGROUND) >= NON_TEXT_MINIMUM
    if contrast(colour, DARK_BACKGROUND) >= NON_TEXT_MINIMUM:
        assert outline == colour


def png(width: int = 40, height: int = 20, colour: str = "#1f6feb") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def upload(content: bytes, name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def form(**changes: Any) -> dict[str, Any]:
    return {
        "display_name": "Example Shop",
        "accent_color": "#1f6feb",
        "welcome_text": "We answer within a minute.",
        "waiting_text": "Thanks for waiting: someone will be with you soon.",
        "consent_text": "",
        "consent_policy_version": "",
        **changes,
    }


@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def errors_of(response: Any) -> str:
    assert response.status_code == 200, response.status_code  # the form again
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.text, re.S))


@pytest.mark.django_db
def test_it_brands_the_page_from_admin_with_a_validated_logo(
    admin_client: Client, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    assert admin_client.get("/admin/calls/branding/")["Location"] == CHANGE_URL
    logo = png()
    saved = admin_client.post(CHANGE_URL, form(logo_upload=upload(logo, "logo.png")))
    assert saved.status_code == 302, errors_of(saved)
    brand = Branding.objects.get()
    assert (brand.logo_type, brand.logo_sha256) == ("image/png", hashlib.sha256(logo).hexdigest())

    _, token = make_session("Ada")
    page = Client().get(f"/talk/?token={token}").content.decode()
    assert "--accent: #1f6feb; --accent-outline: #1f6feb;" in page
    assert "<h1>Example Shop</h1>" in page and "We answer within a minute." in page
    assert "Thanks for waiting: someone will be with you soon." in page
    logo_url = re.search(r'<img class="logo" src="([^"]+)"', page)
    assert logo_url and logo_url.group(1) == f"/talk/brand/logo?v={brand.logo_sha256[:16]}"
    served = Client().get(logo_url.group(1))
    assert (served["Content-Type"], served.content) == ("image/png", logo)
    assert served["Content-Security-Policy"] == "default-src 'none'"

    # Refused, nothing changed: a failing accent (with the nearest that passes), images
    # that are too large, not images, or SVG; the admin never deletes the one row.
    refused = admin_client.post(CHANGE_URL, form(accent_color="#ffcc00"))
    assert "contrast of 1.51:1" in errors_of(refused) and "#907300" in errors_of(refused)
    for content, name, why in [
        (b"x" * (LOGO_MAX_BYTES + 1), "big.png", "at most 256 KB"),
        (png(2000, 10), "wide.png", "at most 1024 on each side"),
        (b"GIF89a not really", "fake.png", "not a readable image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', "x.svg", "readable"),
        (png()[:60], "cut.png", "not a readable image"),
    ]:
        response = admin_client.post(CHANGE_URL, form(logo_upload=upload(content, name)))
        assert why in errors_of(response), name
    assert Branding.objects.get().logo_sha256 == brand.logo_sha256
    assert admin_client.post("/admin/calls/branding/1/delete/", {"post": "yes"}).status_code == 403

    removed = admin_client.post(CHANGE_URL, form(remove_logo="on", accent_color="#000080"))
    assert removed.status_code == 302
    page = Client().get(f"/talk/?token={token}").content.decode()
    assert 'class="logo"' not in page and "--accent: #000080; --accent-outline: #5757ac;" in page
    assert Client().get("/talk/brand/logo").status_code == 404


@pytest.mark.django_db
def test_it_replaces_the_consent_notice_only_with_a_new_version(
    admin_client: Client,
    make_session: Callable[..., tuple[EndUserSession, str]],
    operator: Principal,
    operator_client: APIClient,
) -> None:
    session, token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(operator)
    user = bearer_client(token)
    body = {"granted": True, "policy": "1", "via": "page"}
    assert user.post(f"/api/calls/{call.pk}/consent", body, format="json").status_code == 201

    alone = admin_client.post(CHANGE_URL, form(consent_text="We record calls to train staff."))
    assert "go together" in errors_of(alone)
    same_version = form(consent_text="We record calls to train staff.", consent_policy_version="1")
    assert "give it a new policy version" in errors_of(admin_client.post(CHANGE_URL, same_version))
    new = form(consent_text="We record calls to train staff.", consent_policy_version="2024-2")
    assert admin_client.post(CHANGE_URL, new).status_code == 302

    config = Client().get(f"/talk/?token={token}").content.decode()
    assert '"consentVersion": "2024-2"' in config
    assert '"consentText": "We record calls to train staff."' in config
    # The earlier consent was to another notice: it no longer counts, and the old version
    # is refused; a consent to the new one records the new text's hash.
    status = operator_client.get(f"/api/calls/{call.pk}").json()["consent"]
    assert (status["version"], "user" in status["missing"]) == ("2024-2", True)
    assert_error(
        user.post(f"/api/calls/{call.pk}/consent", body, format="json"), 400, "INVALID_ARGUMENT"
    )
    body["policy"] = "2024-2"
    assert user.post(f"/api/calls/{call.pk}/consent", body, format="json").status_code == 201
    latest = RecordingConsent.objects.latest("created_at")
    assert latest.text_sha256 == hashlib.sha256(b"We record calls to train staff.").hexdigest()
    assert latest.policy_version == "2024-2"
