"""REST: preflight reports — filed by the end user's page, read by operators (calls.preflight)."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import policy
from calls.api.views import ERRORS, principal_of
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call, PreflightReport
from calls.preflight import MAX_REPORT_BYTES, file_report, latest_for_call
from calls.preflight import findings as preflight_findings


class PreflightSerializer(serializers.Serializer):
    preflightID = serializers.UUIDField(source="id")
    sessionId = serializers.UUIDField(source="session_id")
    createdAt = serializers.DateTimeField(source="created_at")
    verdict = serializers.CharField(help_text="good, warning or problem")
    findings = serializers.ListField(
        child=serializers.CharField(),
        help_text="worst first, in the request's language (Accept-Language, ?lang=)",
    )
    report = serializers.DictField(help_text="what the page measured (microphone, echo, turn)")


def preflight_json(report: PreflightReport) -> dict[str, Any]:
    data = dict(PreflightSerializer(report).data)
    data["findings"] = preflight_findings(report)  # stored in English, shown translated
    return data


class PreflightCreateView(APIView):
    @extend_schema(
        summary="File the end user's preflight report (their own session token only)",
        request=OpenApiTypes.OBJECT,
        responses={201: PreflightSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        # Refused before parsing: the cap is on what is sent, not on what it parses to.
        if len(request.body) > MAX_REPORT_BYTES:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, f"The report is larger than {MAX_REPORT_BYTES} bytes"
            )
        report = file_report(
            principal_of(request), request.data, request.META.get("HTTP_USER_AGENT", "")
        )
        return Response(preflight_json(report), status=status.HTTP_201_CREATED)


class CallPreflightView(APIView):
    @extend_schema(
        summary="The caller's latest preflight report (operators)",
        responses={200: PreflightSerializer, **ERRORS},
    )
    def get(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        policy.require_operator(principal, "read preflight reports")
        call = get_object_or_404(Call, pk=callID)
        policy.require_access(principal, call)
        report = latest_for_call(call)
        if report is None:
            raise CallbridgeError(ErrorCode.NOT_FOUND, "The caller made no preflight report")
        return Response(preflight_json(report))
