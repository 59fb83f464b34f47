"""REST endpoints of the public contract: ICE config, end-user sessions, the call lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callbridge.client_address import client_ip
from calls import calling, playback, policy
from calls import hold as holding
from calls.api.pagination import LinkHeaderCursorPagination
from calls.api.serializers import (
    AnswerSerializer,
    CallCreateSerializer,
    CallSerializer,
    ConsentAnswerSerializer,
    ConsentRequestSerializer,
    ConsentSerializer,
    ErrorSerializer,
    IceConfigSerializer,
    OfferSerializer,
    PlaybackSerializer,
    PlayRequestSerializer,
    RecordingSerializer,
    SessionCreatedSerializer,
    SessionCreateSerializer,
)
from calls.api.webrtc import answer_offer, close_media
from calls.calling import parse_uuid
from calls.consent import record_answer
from calls.errors import CallbridgeError, ErrorCode
from calls.ice import ice_configuration
from calls.models import Call, CallState, EndUserSession, StopReason
from calls.principals import Principal
from calls.recordings import (
    start_recording,
    stop_recording,
    withdraw_consent_stops_recording,
)

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 429)}


def principal_of(request: Request) -> Principal:
    principal = request.user
    assert isinstance(principal, Principal)  # guaranteed by our authentication classes
    return principal


def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (no body at all counts as `{}`)."""
    data = request.data  # DRF gives {} for an empty body
    if not isinstance(data, dict):
        raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "The request body must be a JSON object")
    return data


def start_call_from_request(principal: Principal, body: dict[str, Any]) -> Call:
    """POST /api/calls and WaGo's /call/make."""
    fields = CallCreateSerializer(data=body)
    fields.is_valid(raise_exception=True)
    session_id = fields.validated_data.get("sessionId")
    session = None
    if session_id is not None:
        if not principal.is_operator:
            if principal.session is None or session_id != principal.session.pk:
                raise CallbridgeError(ErrorCode.FORBIDDEN, "End users can only call the operators")
        else:
            session = EndUserSession.objects.filter(pk=session_id).first()
            if session is None:
                raise CallbridgeError(ErrorCode.NOT_FOUND, "No such session")
    return calling.start_call(
        principal, fields.validated_data["mode"], session, fields.validated_data.get("queue")
    )


def enduser_page_url(request: Request, token: str) -> str:
    path = f"{reverse('enduser-page')}?token={token}"
    if settings.CALLBRIDGE_PUBLIC_URL:
        return settings.CALLBRIDGE_PUBLIC_URL + path
    return request.build_absolute_uri(path)


class WebRtcConfigView(APIView):
    @extend_schema(
        summary="ICE servers for a peer connection (TURN credentials when configured)",
        responses={200: IceConfigSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        not_after = principal.session.expires_at if principal.session is not None else None
        return Response(ice_configuration(principal.pk, not_after=not_after))


class SessionCreateView(APIView):
    @extend_schema(
        summary="Create an end-user session (its token is shown once)",
        request=SessionCreateSerializer,
        responses={201: SessionCreatedSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        policy.require_operator(principal, "do that")
        body = SessionCreateSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        fields = body.validated_data
        session, token = EndUserSession.create(
            ttl_seconds=fields.get("ttl", settings.CALLBRIDGE_SESSION_TTL_S),
            display_name=fields.get("displayName", ""),
            metadata=fields.get("metadata"),
            created_by_user=principal.user,
            created_by_token=principal.api_token,
        )
        ice = ice_configuration(f"end_user-{session.pk}", not_after=session.expires_at)
        return Response(
            {
                "sessionId": str(session.pk),
                "sessionToken": token,
                "expiresAt": session.expires_at.isoformat(),
                "displayName": session.display_name,
                "metadata": session.metadata,
                "url": enduser_page_url(request, token),
                **ice,
            },
            status=status.HTTP_201_CREATED,
        )


STATE_FILTER = OpenApiParameter(
    "state",
    str,
    description="comma-separated states to include: " + ", ".join(CallState.values),
)


class CallViewSet(viewsets.GenericViewSet):
    serializer_class = CallSerializer
    pagination_class = LinkHeaderCursorPagination
    lookup_url_kwarg = "callID"
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    def get_queryset(self) -> QuerySet[Call]:
        calls = Call.objects.select_related("queue").prefetch_related(
            "legs__user", "consents", "recordings__consents"
        )
        if self.action == "list":
            calls = calls.visible_to(principal_of(self.request))
        return calls

    def get_object(self) -> Call:
        # The URL pattern admits any 36 hex digits and dashes, not only UUIDs.
        call_id = parse_uuid(
            self.kwargs["callID"], CallbridgeError(ErrorCode.NOT_FOUND, "No such call")
        )
        call = get_object_or_404(self.get_queryset(), pk=call_id)
        policy.require_access(principal_of(self.request), call)
        return call

    def _call_response(self, call: Call, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=call.pk)
        return Response(self._serialize(fresh), status=status_code)

    def _serialize(self, call: Call) -> dict[str, Any]:
        return CallSerializer(call, context={"principal": principal_of(self.request)}).data

    @extend_schema(
        summary="List calls (newest first; `Link` header for the next page)",
        parameters=[STATE_FILTER],
        responses={200: CallSerializer(many=True), **ERRORS},
    )
    def list(self, request: Request) -> Response:
        calls = self.get_queryset()
        if states := request.query_params.get("state"):
            wanted = [item.strip() for item in states.split(",") if item.strip()]
            unknown = [item for item in wanted if item not in CallState.values]
            if unknown:
                raise CallbridgeError(
                    ErrorCode.INVALID_ARGUMENT, f"state: unknown state {unknown[0]!r}"
                )
            calls = calls.filter(state__in=wanted)
        page = self.paginate_queryset(calls)
        viewer = {"principal": principal_of(request)}
        return self.get_paginated_response(CallSerializer(page, many=True, context=viewer).data)

    @extend_schema(summary="One call", responses={200: CallSerializer, **ERRORS})
    def retrieve(self, request: Request, callID: str) -> Response:
        return Response(self._serialize(self.get_object()))

    @extend_schema(
        summary="Place a call: end users ring the operators, operators ring `sessionId`",
        request=CallCreateSerializer,
        responses={201: CallSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        call = start_call_from_request(principal_of(request), json_object(request))
        return self._call_response(call, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Answer a ringing call", request=None, responses={200: CallSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def answer(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        call = self.get_object()
        policy.require_may_answer(principal, call)
        call.answer(principal)  # its offer settles in the same transaction (routing.offers)
        return self._call_response(call)

    @extend_schema(
        summary="Reject a ringing call", request=None, responses={200: CallSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, callID: str) -> Response:
        return self._verb(lambda call, who: call.reject(who), callee_only=True)

    @extend_schema(
        summary="End a call (a ringing call: cancel as its caller, reject as its callee)",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def hangup(self, request: Request, callID: str) -> Response:
        return self._verb(lambda call, who: call.hang_up(who), callee_only=False)

    @extend_schema(
        summary="Put the call on hold (its operator only): the end user hears the hold "
        "audio, the operator nothing",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="hold")
    def hold(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        holding.hold(principal_of(request), call)
        return self._call_response(call)

    @extend_schema(
        summary="Take the call off hold (its operator only): both parties hear each other",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        holding.resume(principal_of(request), call)
        return self._call_response(call)

    @extend_schema(
        summary="Give or withdraw your own consent to be recorded on this call",
        request=ConsentRequestSerializer,
        responses={201: ConsentAnswerSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def consent(self, request: Request, callID: str) -> Response:
        body = ConsentRequestSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        answer = record_answer(
            principal_of(request),
            self.get_object(),
            granted=body.validated_data["granted"],
            policy_version=body.validated_data["policy"],
            method=body.validated_data["via"],
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        withdraw_consent_stops_recording(answer)
        fresh = self.get_queryset().get(pk=answer.call_id)
        data = ConsentSerializer(answer).data
        data["consent"] = self._serialize(fresh)["consent"]
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Play a library audio file into the call (mixed over the live audio)",
        request=PlayRequestSerializer,
        responses={200: PlaybackSerializer, 502: ErrorSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def play(self, request: Request, callID: str) -> Response:
        body = PlayRequestSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        result = playback.play(
            principal_of(request),
            self.get_object(),
            body.validated_data["file"],
            body.validated_data["to"],
        )
        return Response(result)

    @extend_schema(
        summary="Stop playing files into the call",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="play/stop")
    def play_stop(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        playback.stop(principal_of(request), call)
        return self._call_response(call)

    @extend_schema(
        summary="Start recording (409 CONSENT_REQUIRED while a needed consent is missing)",
        request=None,
        responses={201: RecordingSerializer, 502: ErrorSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def record(self, request: Request, callID: str) -> Response:
        recording = start_recording(principal_of(request), self.get_object())
        return Response(RecordingSerializer(recording).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Stop the running recording",
        request=None,
        responses={200: RecordingSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="record/stop")
    def record_stop(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        policy.require_operator(principal, "do that")
        recording = stop_recording(self.get_object(), principal.label, StopReason.STOPPED)
        return Response(RecordingSerializer(recording).data)

    @extend_schema(
        summary="Send this party's SDP offer (ICE gathering complete); the answer comes back",
        request=OfferSerializer,
        responses={200: AnswerSerializer, 502: ErrorSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="webrtc/offer")
    def webrtc_offer(self, request: Request, callID: str) -> Response:
        body = OfferSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        plan, sdp = answer_offer(principal_of(request), callID, body.validated_data["sdp"])
        return Response(
            {
                "callID": str(plan.call_id),
                "type": "answer",
                "sdp": sdp,
                "sessionId": str(plan.leg_id),
            }
        )

    @extend_schema(
        summary="Close this party's media (not a hang-up: a new offer reconnects)",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="webrtc/close")
    def webrtc_close(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        close_media(principal_of(request), call)
        return self._call_response(call)

    def _verb(self, apply: Callable[[Call, Principal], object], *, callee_only: bool) -> Response:
        principal = principal_of(self.request)
        call = self.get_object()
        if callee_only:
            policy.require_callee(principal, call)
        policy.require_may_end(principal, call)
        apply(call, principal)  # CallbridgeError (e.g. CALL_STATE) becomes the error body
        return self._call_response(call)
