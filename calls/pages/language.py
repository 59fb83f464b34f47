"""The pages' language (docs/pages.md#languages) and their JavaScript catalogue.

Order: a `lang` query parameter (an integrator's link or embed), then the browser's
Accept-Language, then CALLBRIDGE_DEFAULT_LANGUAGE (LANGUAGE_CODE). Only LANGUAGES count:
anything else falls through to the next source. Admin-entered texts (branding, consent
notice) are shown as entered.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponseBase
from django.middleware.locale import LocaleMiddleware
from django.urls import reverse
from django.utils import translation
from django.views.decorators.http import require_GET
from django.views.i18n import JavaScriptCatalog

LANG_PARAM = "lang"
# A catalogue's URL carries a hash of the compiled catalogues: a new release is a new URL.
CATALOG_MAX_AGE_S = 30 * 24 * 3600


def supported_language(value: str) -> str | None:
    """One of LANGUAGES for `value` (`de`, `de-AT`, `DE`), or None."""
    if not value or len(value) > 35:
        return None
    try:
        return translation.get_supported_language_variant(value.lower())
    except LookupError:
        return None


class PageLanguageMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware (Accept-Language, then the default) after `?lang=`."""

    def process_request(self, request: HttpRequest) -> None:
        language = supported_language(request.GET.get(LANG_PARAM, ""))
        if language is None:
            super().process_request(request)
            return
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()


@cache
def catalog_version() -> str:
    """A short hash of the compiled djangojs catalogues (fixed for the process's life)."""
    digest = hashlib.sha256()
    for path in sorted(settings.LOCALE_PATHS[0].glob("*/LC_MESSAGES/djangojs.mo")):
        digest.update(path.parent.parent.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def catalog_url(language: str | None = None) -> str:
    code = language or translation.get_language() or settings.LANGUAGE_CODE
    return f"{reverse('js-catalog', args=[code])}?v={catalog_version()}"


def page_language(request: HttpRequest) -> dict[str, Any]:
    """Template context: the active language, its direction and its JS catalogue's URL."""
    return {"js_catalog_url": catalog_url()}


_CATALOG = JavaScriptCatalog.as_view(packages=["calls"])


@require_GET
def js_catalog(request: HttpRequest, lang: str) -> HttpResponseBase:
    """`gettext()`/`interpolate()` for the pages' modules, in one language, cacheable."""
    if lang not in dict(settings.LANGUAGES):
        raise Http404("no such language")
    with translation.override(lang):
        response = _CATALOG(request)
    response["Cache-Control"] = f"public, max-age={CATALOG_MAX_AGE_S}, immutable"
    response["Content-Language"] = lang
    return response
