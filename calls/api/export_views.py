"""REST: `GET /api/calls/export`, the call detail records (calls.cdr) as CSV or JSON Lines."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from calls import cdr, policy, queue_stats
from calls.api.views import ERRORS, LIST_FILTERS, filter_calls, principal_of
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call

EXPORT_PARAMETERS = [
    OpenApiParameter(
        "from",
        str,
        description="created at or after (ISO 8601 date or date-time); with neither `from` "
        "nor `to`, every call",
    ),
    OpenApiParameter("to", str, description="created before (a date: its end)"),
    OpenApiParameter("format", str, enum=list(cdr.FORMATS), description="csv (default) or jsonl"),
    *[p for p in LIST_FILTERS if p.name not in ("since", "until")],
]


class FormatIsOurs(DefaultContentNegotiation):
    """`?format=` is the export's (csv, jsonl), not DRF's renderer override; errors
    are JSON as everywhere."""

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        first = next(iter(renderers))
        return first, first.media_type


class CallExportView(APIView):
    content_negotiation_class = FormatIsOurs

    @extend_schema(
        summary="Call detail records (operators and API tokens), oldest first, streamed",
        parameters=EXPORT_PARAMETERS,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR),
            **ERRORS,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        policy.require_operator(principal_of(request), "export call records")
        params = request.query_params
        fmt = params.get("format") or "csv"
        if fmt not in cdr.FORMATS:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "format: csv or jsonl")
        others = {k: v for k, v in params.items() if k not in ("since", "until")}
        calls = filter_calls(Call.objects.all(), others)
        if params.get("from") or params.get("to"):
            period = queue_stats.parse_period(params.get("from"), params.get("to"))
            calls = calls.filter(created_at__gte=period.since, created_at__lt=period.until)
        return cdr.response(calls, fmt)
