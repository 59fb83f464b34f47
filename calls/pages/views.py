"""The end-user page, opened from a session link (`?token=`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from calls.models import EndUserSession
from calls.tokens import token_kind


@require_GET
def enduser_page(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token", "")
    session = EndUserSession.objects.find(token) if token_kind(token) == "cbs" else None
    if session is None:
        problem, status = "This call link is not valid. Ask for a new one.", 401
    elif session.is_revoked:
        problem, status = "This call link was withdrawn. Ask for a new one.", 401
    elif session.is_expired:
        problem, status = "This call link has expired. Ask for a new one.", 410
    else:
        problem, status = "", 200
    response = render(
        request,
        "enduser/page.html",
        {"session": session if not problem else None, "problem": problem},
        status=status,
    )
    # The token is in the URL: keep it out of other sites' logs and caches.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
