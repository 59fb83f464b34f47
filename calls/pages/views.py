"""The two faces: the end-user call page and the operators' dashboard."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from calls.ice import ice_configuration
from calls.models import AudioFile, EndUserSession
from calls.operators import is_operator_user
from calls.tokens import token_kind

LOBBY_NAME_MAX = 60


def consent_config() -> dict[str, str]:
    return {
        "consentPolicy": settings.CALLBRIDGE_RECORDING_CONSENT,
        "consentVersion": settings.CALLBRIDGE_CONSENT_POLICY_VERSION,
        "consentText": settings.CALLBRIDGE_CONSENT_TEXT,
    }


def _no_store(response: HttpResponse) -> HttpResponse:
    # The token is in the URL: keep it out of other sites' logs and caches.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def enduser_page(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token", "")
    if not token and settings.CALLBRIDGE_PUBLIC_LOBBY:
        return _lobby(request)
    session = EndUserSession.objects.find(token) if token_kind(token) == "cbs" else None
    if session is None:
        problem, status = "This call link is not valid. Ask for a new one.", 401
    elif session.is_revoked:
        problem, status = "This call link was withdrawn. Ask for a new one.", 401
    elif session.is_expired:
        problem, status = "This call link has expired. Ask for a new one.", 410
    else:
        problem, status = "", 200
    context: dict[str, Any] = {"problem": problem, "session": None, "config": None}
    if not problem:
        assert session is not None
        context["session"] = session
        context["config"] = {
            "token": token,
            "sessionId": str(session.pk),
            "displayName": session.display_name,
            "expiresAt": session.expires_at.isoformat(),
            "signalPath": "/ws/signal",
            **consent_config(),
            **ice_configuration(f"end_user-{session.pk}", not_after=session.expires_at),
        }
    return _no_store(render(request, "enduser/page.html", context, status=status))


def _lobby(request: HttpRequest) -> HttpResponse:
    """CALLBRIDGE_PUBLIC_LOBBY: anyone may call; each visitor gets an anonymous session."""
    name = request.GET.get("name", "").strip()[:LOBBY_NAME_MAX]
    _, token = EndUserSession.create(
        ttl_seconds=settings.CALLBRIDGE_SESSION_TTL_S,
        display_name=name or "Visitor",
        metadata={"lobby": True},
    )
    return _no_store(HttpResponseRedirect(f"{reverse('enduser-page')}?token={token}"))


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not is_operator_user(request.user):
        raise PermissionDenied("This staff login may not operate calls.")
    config = {
        "operator": request.user.get_username(),
        "csrfToken": get_token(request),
        "feedPath": "/ws/operator",
        "recordingAdminUrl": reverse(
            "admin:calls_recording_change", args=["00000000-0000-0000-0000-000000000000"]
        ),
        **consent_config(),
        "callAdminUrl": reverse(
            "admin:calls_call_change", args=["00000000-0000-0000-0000-000000000000"]
        ),
        "audioFiles": [
            {"name": audio.name, "durationS": round(audio.duration_s, 1)}
            for audio in AudioFile.objects.all()
        ],
        **ice_configuration(f"staff-{request.user.pk}"),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Operator dashboard",
        "config": config,
    }
    response = render(request, "admin/calls/dashboard.html", context)
    response["Cache-Control"] = "no-store"
    return response
