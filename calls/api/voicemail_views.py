"""REST: the voicemails callers left (calls.voicemail), for operators who may hear them.

A voicemail is a Recording of kind `voicemail`: the recordings' permissions apply as they
are. Staff need `calls.view_recording` or `calls.listen_recording` to list them; listening
goes through the admin's audited path (`audioUrl`: `calls.listen_recording`, one
RecordingAccess row per listen). API tokens (integrator backends) read them as they read
calls' recordings.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import policy
from calls.api.pagination import LinkHeaderCursorPagination
from calls.api.views import ERRORS, principal_of
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Recording, RecordingAccess, RecordingKind, RecordingState
from calls.models.recording import UNSENT
from calls.principals import Principal

LIST_PERMISSIONS = ("calls.view_recording", "calls.listen_recording")


class VoicemailSerializer(serializers.Serializer):
    recordingID = serializers.UUIDField(source="id")
    callID = serializers.UUIDField(source="call_id")
    state = serializers.CharField(help_text="recording (being left now), finished or failed")
    startedAt = serializers.DateTimeField(source="started_at")
    durationS = serializers.FloatField(source="duration_s", allow_null=True)
    queue = serializers.CharField(source="call.queue.public_id", allow_null=True, default=None)
    queueName = serializers.CharField(source="call.queue.name", allow_null=True, default=None)
    callerName = serializers.SerializerMethodField()
    listened = serializers.BooleanField(help_text="someone listened to or downloaded it")
    audioUrl = serializers.SerializerMethodField(
        help_text="the admin's audited stream (calls.listen_recording); null until finished "
        "or once purged"
    )

    def get_callerName(self, recording: Recording) -> str:
        session = recording.call.session
        return session.display_name if session is not None else ""

    def get_audioUrl(self, recording: Recording) -> str | None:
        if recording.state != RecordingState.FINISHED or recording.purged_at is not None:
            return None
        return reverse("admin:calls_recording_audio", args=[recording.pk])


def require_may_list(principal: Principal) -> None:
    policy.require_operator(principal, "list voicemails")
    user = principal.user
    if user is not None and not any(user.has_perm(p) for p in LIST_PERMISSIONS):
        raise CallbridgeError(
            ErrorCode.FORBIDDEN, "listing voicemails needs the permission to view recordings"
        )


class VoicemailPagination(LinkHeaderCursorPagination):
    ordering = "-started_at"


class VoicemailListView(APIView):
    pagination_class = VoicemailPagination

    def voicemails(self) -> QuerySet[Recording]:
        heard = RecordingAccess.objects.filter(recording=OuterRef("pk"))
        return (
            Recording.objects.filter(kind=RecordingKind.VOICEMAIL)
            .exclude(stop_reason__in=UNSENT)
            .select_related("call__queue", "call__session")
            .annotate(listened=Exists(heard))
        )

    @extend_schema(
        summary="Voicemails, newest first (`Link` header for the next page)",
        responses={200: VoicemailSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        require_may_list(principal_of(request))
        paginator = self.pagination_class()
        page: Any = paginator.paginate_queryset(self.voicemails(), request, view=self)
        return paginator.get_paginated_response(VoicemailSerializer(page, many=True).data)
