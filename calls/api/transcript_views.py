"""REST: a recording's transcript (`GET /api/recordings/{id}/transcript`, logged in the
recordings' access log) and the search over transcripts (`GET /api/transcripts?q=`, which
names the recordings whose words match and shows none of them). Both need the recordings'
listen permission (an API token's `can_listen`, staff's `calls.listen_recording`).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callbridge.client_address import client_ip
from calls import transcripts
from calls.api.pagination import LinkHeaderCursorPagination
from calls.api.recording_views import require_may_listen
from calls.api.views import ERRORS, principal_of
from calls.calling import parse_uuid
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Recording, Transcript, TranscriptState


class UtteranceSerializer(serializers.Serializer):
    startS = serializers.FloatField(source="start_s", help_text="seconds into the recording")
    endS = serializers.FloatField(source="end_s")
    channel = serializers.IntegerField(help_text="0: the end user (left), 1: the operator")
    role = serializers.CharField(help_text="user or operator")
    party = serializers.CharField(help_text="the end user's display name, the operator's name")
    text = serializers.CharField()


class TranscriptSerializer(serializers.Serializer):
    recordingID = serializers.UUIDField(source="recording_id")
    callID = serializers.UUIDField(source="recording.call_id")
    state = serializers.ChoiceField(
        choices=TranscriptState.values,
        help_text="pending, running, done; failed or refused (the recording's consents do "
        "not allow one) with `error`",
    )
    error = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    model = serializers.CharField(source="model_name")
    modelSha256 = serializers.CharField(source="model_sha256")
    language = serializers.CharField()
    utterances = serializers.SerializerMethodField(help_text="in time order; empty until done")

    @extend_schema_field(UtteranceSerializer(many=True))
    def get_utterances(self, transcript: Transcript) -> Any:
        return UtteranceSerializer(self.context["lines"], many=True).data


class TranscriptView(APIView):
    @extend_schema(
        summary="A recording's transcript: who said what, when (each read is logged in the "
        "recordings' access log)",
        responses={200: TranscriptSerializer, **ERRORS},
    )
    def get(self, request: Request, recordingID: str) -> Response:
        principal = principal_of(request)
        require_may_listen(principal)
        missing = CallbridgeError(ErrorCode.NOT_FOUND, "No such recording")
        recording = (
            Recording.objects.select_related("call")
            .filter(pk=parse_uuid(recordingID, missing))
            .first()
        )
        if recording is None:
            raise missing
        transcript = transcripts.readable(recording)
        if transcript is None:
            raise CallbridgeError(
                ErrorCode.NOT_FOUND,
                "this recording has no transcript (transcripts off, not queued yet, or "
                "deleted with the recording's file)",
            )
        lines = transcripts.read_lines(
            transcript, user=principal.user, username=principal.label, ip=client_ip(request)
        )
        return Response(TranscriptSerializer(transcript, context={"lines": lines}).data)


class TranscriptMatchSerializer(serializers.Serializer):
    recordingID = serializers.UUIDField(source="recording_id")
    callID = serializers.UUIDField(source="recording.call_id")
    recordingStartedAt = serializers.DateTimeField(source="recording.started_at")
    transcriptUrl = serializers.SerializerMethodField()

    def get_transcriptUrl(self, transcript: Transcript) -> str:
        return reverse("recording-transcript", args=[transcript.recording_id])


class TranscriptPagination(LinkHeaderCursorPagination):
    ordering = "-created_at"


class TranscriptSearchView(APIView):
    pagination_class = TranscriptPagination

    @extend_schema(
        summary="Recordings whose transcript matches `q` (full-text search on PostgreSQL: "
        'English stemming, "quoted phrases", or, -word; elsewhere every word as a '
        "substring), newest first",
        parameters=[OpenApiParameter("q", str, required=True, description="what was said")],
        responses={200: TranscriptMatchSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        require_may_listen(principal_of(request))
        terms = request.query_params.get("q", "").strip()
        if not terms or len(terms) > 200 or not terms.isprintable():
            # (PostgreSQL refuses NUL in a query: refused here, not as a server error.)
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "q: 1 to 200 printable characters")
        found = transcripts.search(
            Transcript.objects.filter(state=TranscriptState.DONE, purged_at=None).select_related(
                "recording"
            ),
            terms,
        )
        paginator = self.pagination_class()
        page: Any = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(TranscriptMatchSerializer(page, many=True).data)
