"""The two faces: the end-user call page and the operators' dashboard."""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calls.branding import page_branding
from calls.consent import current_notice
from calls.ice import ice_configuration
from calls.limits import LobbyThrottle
from calls.models import AudioFile, Branding, EndUserSession
from calls.notes import SUPERVISOR_PERMISSION
from calls.operators import is_operator_user
from calls.pages.language import LANG_PARAM, supported_language
from calls.supervision import is_supervisor_user
from calls.tokens import token_kind

LOBBY_NAME_MAX = 60
# Keeps a lobby visitor's session token (HttpOnly, /talk/ only): a reload re-uses it.
LOBBY_COOKIE = "callbridge_lobby"


def consent_config() -> dict[str, str]:
    notice = current_notice()  # the admin's branding may replace the settings' notice
    return {
        "consentPolicy": settings.CALLBRIDGE_RECORDING_CONSENT,
        "consentVersion": notice.version,
        "consentText": notice.text,
    }


def _no_store(response: HttpResponse) -> HttpResponse:
    # The token is in the URL: keep it out of other sites' logs and caches.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


QUEUE_PARAM = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def queue_param(request: HttpRequest) -> str:
    """The queue a call link names (`&queue=<public id>`), if it looks like one: the page's
    calls go there (unknown: the offer's NOT_FOUND tells the caller); else "" (default)."""
    value = request.GET.get("queue", "")
    return value if QUEUE_PARAM.fullmatch(value) else ""


def session_problem(token: str) -> tuple[EndUserSession | None, str, int]:
    """The session a page's token stands for, or what is wrong with it (text, HTTP status)."""
    session = EndUserSession.objects.find(token) if token_kind(token) == "cbs" else None
    if session is None:
        return None, _("This call link is not valid. Ask for a new one."), 401
    if session.is_revoked:
        return None, _("This call link was withdrawn. Ask for a new one."), 401
    if session.is_expired:
        return None, _("This call link has expired. Ask for a new one."), 410
    return session, "", 200


def session_config(request: HttpRequest, session: EndUserSession, token: str) -> dict[str, Any]:
    """What the page's script needs for one session (the token included: it is theirs)."""
    return {
        "token": token,
        "sessionId": str(session.pk),
        "displayName": session.display_name,
        "expiresAt": session.expires_at.isoformat(),
        "signalPath": "/ws/signal",
        "queue": queue_param(request),
        # Check microphone and connection before the first call, or only when asked.
        "preflight": settings.CALLBRIDGE_PREFLIGHT,
        **consent_config(),
        **ice_configuration(f"end_user-{session.pk}", not_after=session.expires_at),
    }


def page_context(problem: str, session: EndUserSession | None, config: Any) -> dict[str, Any]:
    """The end-user page template's context: the branding (calls.branding) with it."""
    return {"problem": problem, "session": session, "config": config, "brand": page_branding()}


@require_GET
def brand_logo(request: HttpRequest) -> HttpResponse:
    """The branding's logo (validated on upload; kept in the database, not MEDIA_ROOT)."""
    brand = Branding.current()
    if not brand.logo_sha256:
        raise Http404("no logo")
    response = HttpResponse(bytes(brand.logo), content_type=brand.logo_type)
    # Its URL carries the hash (`?v=`): a new logo is a new URL.
    response["Cache-Control"] = "public, max-age=86400"
    response["Content-Security-Policy"] = "default-src 'none'"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"  # embedding sites may show it
    return response


@require_GET
def enduser_page(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token", "")
    if not token and settings.CALLBRIDGE_PUBLIC_LOBBY:
        return _lobby(request)
    session, problem, status = session_problem(token)
    config = session_config(request, session, token) if session is not None else None
    context = page_context(problem, session, config)
    return _no_store(render(request, "enduser/page.html", context, status=status))


def _page_url(request: HttpRequest, token: str) -> str:
    """The page for a lobby visitor's session, in the language the link asked for."""
    url = f"{reverse('enduser-page')}?token={token}"
    language = supported_language(request.GET.get(LANG_PARAM, ""))
    return f"{url}&{LANG_PARAM}={language}" if language else url


def _lobby(request: HttpRequest) -> HttpResponse:
    """CALLBRIDGE_PUBLIC_LOBBY: anyone may call; each visitor gets an anonymous session.

    A returning visitor (reload, new tab) gets their session back from a cookie, so only
    new visitors count against CALLBRIDGE_LIMIT_LOBBY_SESSIONS_PER_IP."""
    kept = request.COOKIES.get(LOBBY_COOKIE, "")
    session = EndUserSession.objects.find(kept) if token_kind(kept) == "cbs" else None
    if session is not None and session.is_usable and (session.metadata or {}).get("lobby"):
        return _no_store(HttpResponseRedirect(_page_url(request, kept)))
    throttle = LobbyThrottle()
    # DRF types a DRF Request and view; this throttle reads only the request's META.
    if not throttle.allow_request(request, None):  # type: ignore[arg-type]
        return _too_many_lobby_sessions(request, throttle)
    name = request.GET.get("name", "").strip()[:LOBBY_NAME_MAX]
    session, token = EndUserSession.create(
        ttl_seconds=settings.CALLBRIDGE_SESSION_TTL_S,
        display_name=name or _("Visitor"),
        metadata={"lobby": True},
    )
    response = HttpResponseRedirect(_page_url(request, token))
    response.set_cookie(
        LOBBY_COOKIE,
        token,
        max_age=settings.CALLBRIDGE_SESSION_TTL_S,
        path=reverse("enduser-page"),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return _no_store(response)


def _too_many_lobby_sessions(request: HttpRequest, throttle: LobbyThrottle) -> HttpResponse:
    """RATE_LIMITED (429): this address made its share of new lobby sessions."""
    wait = math.ceil(throttle.wait() or 1)
    context = page_context(
        _("Too many new calls from your network. Try again in a few minutes."), None, None
    )
    response = render(request, "enduser/page.html", context, status=429)
    response["Retry-After"] = str(wait)
    return _no_store(response)


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not is_operator_user(request.user):
        raise PermissionDenied("This staff login may not operate calls.")
    config = {
        "operator": request.user.get_username(),
        # Supervisors handle every queue's callback requests (calls.callbacks).
        "seesAllQueues": request.user.has_perm("calls.change_callbackrequest"),
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
        "notesMaxChars": settings.CALLBRIDGE_NOTES_MAX_CHARS,
        # Supervisors get the notes box on everyone's calls (the API decides anyway).
        "notesSupervisor": request.user.has_perm(SUPERVISOR_PERMISSION),
        # Monitor / Whisper / Barge on other operators' calls (calls.supervision).
        "callSupervisor": is_supervisor_user(request.user),
        **ice_configuration(f"staff-{request.user.pk}"),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Operator dashboard"),
        "config": config,
    }
    response = render(request, "admin/calls/dashboard.html", context)
    response["Cache-Control"] = "no-store"
    return response
