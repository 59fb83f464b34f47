"""The end-user page framed by an integrator's site (docs/embedding.md).

`/talk/embed/` is the end-user page without a token in its URL: only the origins in
CALLBRIDGE_EMBED_ORIGINS may frame it (CSP `frame-ancestors`; this one page is exempt from
X-Frame-Options, every other page keeps DENY). Its script says `ready` to the host page,
takes the session token from it by `postMessage`, and trades it here
(`POST /talk/embed/session`, the token in the body: never in a URL or an access log) for
the same configuration the plain page renders inline.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from calls.errors import ErrorCode, error_body
from calls.pages.views import page_context, queue_param, session_config, session_problem

# A token is ~50 characters: anything much longer is not one.
MAX_BODY_BYTES = 2048


def frame_ancestors() -> str:
    origins = settings.CALLBRIDGE_EMBED_ORIGINS
    return "frame-ancestors " + (" ".join(origins) if origins else "'none'")


def _framable(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = frame_ancestors()
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@xframe_options_exempt
@require_GET
def embed_page(request: HttpRequest) -> HttpResponse:
    config: dict[str, Any] = {
        "embed": True,
        "embedOrigins": settings.CALLBRIDGE_EMBED_ORIGINS,
        "sessionPath": reverse("enduser-embed-session"),
        "queue": queue_param(request),
    }
    context = page_context("", None, config)
    return _framable(render(request, "enduser/page.html", context))


def _error(code: ErrorCode, message: str, status: int | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status or code.http_status)


@csrf_exempt  # no cookie is involved: the token in the body is the credential
@require_POST
def embed_session(request: HttpRequest) -> JsonResponse:
    """The framed page's configuration for the session whose token the host handed it."""
    if len(request.body) > MAX_BODY_BYTES:
        return _error(ErrorCode.INVALID_ARGUMENT, "The body is too large.")
    try:
        body = json.loads(request.body)
    except ValueError:
        return _error(ErrorCode.INVALID_MESSAGE, "The body is not JSON.")
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return _error(ErrorCode.INVALID_ARGUMENT, "`token` (a session token) is required.")
    session, problem, status = session_problem(token)
    if session is None:
        return _error(ErrorCode.UNAUTHORIZED, problem, status)
    response = JsonResponse(session_config(request, session, token))
    response["Cache-Control"] = "no-store"
    return response
