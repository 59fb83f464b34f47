"""`GET /metrics`: Prometheus' text format, for scrapers with the metrics token or from an
allowed address (never open: neither configured, the endpoint does not exist → 404)."""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from callbridge.client_address import Network, client_ip, parse_networks
from calls.metrics_scrape import scrape


@lru_cache(maxsize=4)
def _allowed(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def _from_allowed_address(request: HttpRequest) -> bool:
    networks = _allowed(tuple(settings.CALLBRIDGE_METRICS_ALLOWED))
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(client_ip(request) or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _token_matches(offered: str) -> bool:
    expected = settings.CALLBRIDGE_METRICS_TOKEN
    # Constant time: how much of a guess matched must not show in the response time.
    return bool(expected) and hmac.compare_digest(offered.encode(), expected.encode())


def _refused(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token_set = bool(settings.CALLBRIDGE_METRICS_TOKEN)
    if not token_set and not settings.CALLBRIDGE_METRICS_ALLOWED:
        return _refused(404, "not found")  # metrics are off until a scraper is configured
    offered = _bearer(request)
    if offered is not None:
        if not _token_matches(offered):
            return _refused(403, "forbidden")
    elif not _from_allowed_address(request):
        if token_set:
            return _refused(401, "the metrics token is required")
        return _refused(403, "forbidden")
    body, content_type = scrape(request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
