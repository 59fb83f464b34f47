"""REST: recordings for integrators' backends and staff who may listen —
`GET /api/recordings` (filters: call, kind, state, since/until) and
`GET /api/recordings/{id}/audio` (Range requests; every fetch in RecordingAccess, as the
admin's player writes it).

An API token holds the listen permission through its `can_listen` flag (set in the admin
by staff who hold it themselves); staff operators through `calls.listen_recording`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callbridge.client_address import client_ip
from calls import policy, queue_stats, recording_files
from calls.api.export_views import FormatIsOurs
from calls.api.pagination import LinkHeaderCursorPagination
from calls.api.views import ERRORS, principal_of
from calls.calling import parse_uuid
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Recording, RecordingAccess, RecordingKind, RecordingState
from calls.principals import Principal


def may_listen(principal: Principal) -> bool:
    if principal.api_token is not None:
        return principal.api_token.can_listen
    return principal.user is not None and principal.user.has_perm("calls.listen_recording")


def require_may_listen(principal: Principal) -> None:
    policy.require_operator(principal, "fetch recordings")
    if not may_listen(principal):
        raise CallbridgeError(
            ErrorCode.FORBIDDEN,
            "recordings need the listen permission (an API token's `can_listen`, set in admin)",
        )


class RecordingItemSerializer(serializers.Serializer):
    recordingID = serializers.UUIDField(source="id")
    callID = serializers.UUIDField(source="call_id")
    kind = serializers.CharField(help_text="call (both parties) or voicemail")
    state = serializers.CharField(help_text="recording, finished or failed")
    startedAt = serializers.DateTimeField(source="started_at")
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    durationS = serializers.FloatField(source="duration_s", allow_null=True)
    sizeBytes = serializers.IntegerField(source="size_bytes", allow_null=True)
    sha256 = serializers.CharField(help_text="of the WAV file (empty until finished)")
    stopReason = serializers.CharField(source="stop_reason")
    purgedAt = serializers.DateTimeField(source="purged_at", allow_null=True)
    listened = serializers.BooleanField(help_text="someone listened to or downloaded it")
    audioUrl = serializers.SerializerMethodField(
        help_text="GET it (Range requests welcome); null until finished or once purged"
    )

    def get_audioUrl(self, recording: Recording) -> str | None:
        if recording.state != RecordingState.FINISHED or recording.purged_at is not None:
            return None
        return reverse("recording-audio", args=[recording.pk])


class RecordingPagination(LinkHeaderCursorPagination):
    ordering = "-started_at"


def _choice(value: str, allowed: list[str], field: str) -> str:
    if value not in allowed:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"{field}: one of {', '.join(allowed)}")
    return value


def filter_recordings(recordings: QuerySet[Recording], params: Any) -> QuerySet[Recording]:
    if call := params.get("call"):
        call_id = parse_uuid(call, CallbridgeError(ErrorCode.INVALID_ARGUMENT, "call: a call id"))
        recordings = recordings.filter(call_id=call_id)
    if kind := params.get("kind"):
        recordings = recordings.filter(kind=_choice(kind, RecordingKind.values, "kind"))
    if state := params.get("state"):
        recordings = recordings.filter(state=_choice(state, RecordingState.values, "state"))
    if params.get("since") or params.get("until"):
        period = queue_stats.parse_period(params.get("since"), params.get("until"))
        recordings = recordings.filter(started_at__gte=period.since, started_at__lt=period.until)
    return recordings


class RecordingListView(APIView):
    pagination_class = RecordingPagination

    @extend_schema(
        summary="Recordings, newest first (API tokens with `can_listen`, staff who may "
        "listen; `Link` header for the next page)",
        parameters=[
            OpenApiParameter("call", str, description="one call's recordings"),
            OpenApiParameter("kind", str, enum=list(RecordingKind.values)),
            OpenApiParameter("state", str, enum=list(RecordingState.values)),
            OpenApiParameter("since", str, description="started at or after (ISO 8601)"),
            OpenApiParameter("until", str, description="started before (a date: its end)"),
        ],
        responses={200: RecordingItemSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        require_may_listen(principal_of(request))
        heard = RecordingAccess.objects.filter(recording=OuterRef("pk"))
        recordings = filter_recordings(
            Recording.objects.annotate(listened=Exists(heard)), request.query_params
        )
        paginator = self.pagination_class()
        page: Any = paginator.paginate_queryset(recordings, request, view=self)
        return paginator.get_paginated_response(RecordingItemSerializer(page, many=True).data)


class RecordingAudioView(APIView):
    content_negotiation_class = FormatIsOurs  # the body is audio/wav; errors are JSON

    @extend_schema(
        summary="A recording's WAV (`Range: bytes=…` → 206; a range past the end → 416); "
        "`?download=1` as an attachment. Every fetch is logged",
        parameters=[OpenApiParameter("download", str, description="1: as an attachment")],
        responses={
            (200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY),
            (206, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY),
            416: ERRORS[400],
            **ERRORS,
        },
    )
    def get(self, request: Request, recordingID: str) -> HttpResponseBase:
        principal = principal_of(request)
        require_may_listen(principal)
        missing = CallbridgeError(ErrorCode.NOT_FOUND, "No such recording")
        recording = Recording.objects.filter(pk=parse_uuid(recordingID, missing)).first()
        if recording is None:
            raise missing
        file = recording_files.playable_file(recording)
        if file is None:
            raise CallbridgeError(
                ErrorCode.NOT_FOUND,
                "this recording's file is not available (running, failed or purged)",
            )
        download = request.query_params.get("download") == "1"
        try:
            response = recording_files.file_response(
                file, request.headers.get("Range"), download=download, filename=recording.file_name
            )
        except recording_files.RangeNotSatisfiable as refused:
            return Response(
                refused.as_body(), status=416, headers={"Content-Range": f"bytes */{refused.size}"}
            )
        recording_files.log_access(
            recording,
            user=principal.user,
            username=principal.label,
            download=download,
            ip=client_ip(request),
        )
        return response
