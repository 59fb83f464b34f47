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
from calls import (
    callbacks,
    calling,
    notes,
    playback,
    policy,
    queue_stats,
    setup_trace,
    supervision,
    timeline,
)
from calls import consult as consulting
from calls import hold as holding
from calls import transfer as transferring
from calls.api.notes_serializers import (
    CallNotesSerializer,
    DispositionCodeSerializer,
    NotesUpdateSerializer,
    call_notes_body,
)
from calls.api.pagination import LinkHeaderCursorPagination
from calls.api.serializers import (
    AnswerSerializer,
    CallbackAskedSerializer,
    CallbackAskSerializer,
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
    SuperviseRequestSerializer,
    TimelineEventSerializer,
    TransferRequestSerializer,
)
from calls.api.webrtc import answer_offer, close_media
from calls.calling import parse_uuid
from calls.consent import record_answer
from calls.errors import CallbridgeError, ErrorCode
from calls.ice import ice_configuration
from calls.models import (
    Call,
    CallDirection,
    CallEvent,
    CallState,
    DispositionCode,
    EndReason,
    EndUserSession,
    StopReason,
)
from calls.principals import Principal
from calls.recordings import (
    start_recording,
    stop_recording,
    withdraw_consent_stops_recording,
)
from calls.routing import offers

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 429)}


class TimelinePagination(LinkHeaderCursorPagination):
    ordering = ("created_at", "id")  # type: ignore[assignment]  # DRF takes a tuple; oldest first: a timeline reads forwards


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


def create_session(
    principal: Principal,
    *,
    ttl_seconds: int,
    display_name: str = "",
    metadata: dict[str, Any] | None = None,
    agent: str = "",
) -> tuple[EndUserSession, str, dict[str, Any]]:
    """A new end-user session made by an operator principal: the row, its token (the only
    copy) and its ICE configuration, whose TURN credentials end with the session."""
    policy.require_operator(principal, "do that")
    session, token = EndUserSession.create(
        ttl_seconds=ttl_seconds,
        display_name=display_name,
        metadata=metadata,
        created_by_user=principal.user,
        created_by_token=principal.api_token,
        agent=agent,
    )
    ice = ice_configuration(f"end_user-{session.pk}", not_after=session.expires_at)
    return session, token, ice


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
        session, token, ice = create_session(
            principal,
            ttl_seconds=fields.get("ttl", settings.CALLBRIDGE_SESSION_TTL_S),
            display_name=fields.get("displayName", ""),
            metadata=fields.get("metadata"),
        )
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
DISPOSITION_FILTER = OpenApiParameter(
    "disposition",
    str,
    description="operators: comma-separated disposition codes (GET /api/dispositions)",
)
NOTES_SEARCH = OpenApiParameter(
    "q", str, description="operators: calls whose notes hold every word (case-insensitive)"
)


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


LIST_FILTERS = [
    STATE_FILTER,
    OpenApiParameter(
        "endReason",
        str,
        description="comma-separated end reasons to include: " + ", ".join(EndReason.values),
    ),
    OpenApiParameter(
        "answered", bool, description="true: answered calls only; false: never answered"
    ),
    OpenApiParameter("direction", str, description="inbound or outbound"),
    OpenApiParameter("queue", str, description="calls that (last) waited in this queue"),
    OpenApiParameter(
        "since",
        str,
        description="created at or after (ISO 8601 date or date-time; with `until` only: "
        "today's start)",
    ),
    OpenApiParameter(
        "until", str, description="created before (a date: its end; with `since` only: today's end)"
    ),
]


def _listed(values: str, allowed: list[str], field: str) -> list[str]:
    wanted = comma_list(values)
    unknown = [item for item in wanted if item not in allowed]
    if unknown:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"{field}: unknown value {unknown[0]!r}")
    return wanted


def filter_calls(calls: QuerySet[Call], params: Any) -> QuerySet[Call]:
    """`GET /api/calls`' filters (e.g. today's missed calls of one queue:
    `?answered=false&direction=inbound&queue=support&since=<today>`)."""
    if states := params.get("state"):
        calls = calls.filter(state__in=_listed(states, CallState.values, "state"))
    if reasons := params.get("endReason"):
        calls = calls.filter(end_reason__in=_listed(reasons, EndReason.values, "endReason"))
    if (answered := params.get("answered")) is not None:
        if answered not in ("true", "false"):
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "answered: true or false")
        calls = calls.filter(answered_at__isnull=answered == "false")
    if direction := params.get("direction"):
        if direction not in CallDirection.values:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "direction: inbound or outbound")
        calls = calls.filter(direction=direction)
    if queue := params.get("queue"):
        calls = calls.filter(queue__public_id=queue)
    if params.get("since") or params.get("until"):
        period = queue_stats.parse_period(params.get("since"), params.get("until"))
        calls = calls.filter(created_at__gte=period.since, created_at__lt=period.until)
    return calls


class CallViewSet(viewsets.GenericViewSet):
    serializer_class = CallSerializer
    pagination_class = LinkHeaderCursorPagination
    lookup_url_kwarg = "callID"
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    def get_queryset(self) -> QuerySet[Call]:
        calls = Call.objects.select_related("queue", "call_notes__disposition").prefetch_related(
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
        parameters=[*LIST_FILTERS, DISPOSITION_FILTER, NOTES_SEARCH],
        responses={200: CallSerializer(many=True), **ERRORS},
    )
    def list(self, request: Request) -> Response:
        calls = self.get_queryset()
        principal = principal_of(request)
        codes = request.query_params.get("disposition")
        text = request.query_params.get("q")
        if codes is not None or text is not None:
            # An end user must not learn what the notes of its calls say, even by search.
            notes.require_may_read(principal)
            if codes is not None:
                calls = notes.with_dispositions(calls, comma_list(codes))
            if text is not None:
                calls = notes.matching(calls, text)
        calls = filter_calls(calls, request.query_params)
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
        summary="Answer a ringing call (or a consult ringing for you: your leg joins it)",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def answer(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        call = self.get_object()
        if consulting.rings_for(principal, call):  # an attended transfer's consult
            consulting.answer(principal, call)
            return self._call_response(call)
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
        summary="Decline your offer of a queued call: it rings the next operator",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def decline(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        call = self.get_object()
        policy.require_may_decline(principal, call)
        assert principal.user is not None  # require_may_decline: a staff operator
        offers.decline(call.pk, principal.user.pk)
        return self._call_response(self.get_object())

    @extend_schema(
        summary="End a call (a ringing call: cancel as its caller, reject as its callee)",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def hangup(self, request: Request, callID: str) -> Response:
        return self._verb(lambda call, who: call.hang_up(who), callee_only=False)

    @extend_schema(
        methods=["GET"],
        summary="The call's notes and disposition, with every revision (operators)",
        request=None,
        responses={200: CallNotesSerializer, **ERRORS},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set the call's disposition and/or notes (its operator, in the call or "
        "its wrap-up window; supervisors any time). 409 CALL_STATE: changed meanwhile",
        request=NotesUpdateSerializer,
        responses={200: CallNotesSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get", "put"])
    def disposition(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        call = self.get_object()
        if request.method == "PUT":
            body = NotesUpdateSerializer(data=json_object(request))
            body.is_valid(raise_exception=True)
            saved = notes.save(
                principal,
                call,
                code=body.validated_data.get("code", notes.UNSET),
                notes=body.validated_data.get("notes", notes.UNSET),
                revision=body.validated_data.get("revision"),
            )
            return Response(call_notes_body(self.get_queryset().get(pk=call.pk), saved))
        notes.require_may_read(principal)
        return Response(call_notes_body(call, notes.current(call)))

    @extend_schema(
        summary="The call's timeline, oldest first (`Link` header for the next page): "
        "parties see what their socket was told, operators the feed's records",
        request=None,
        responses={200: TimelineEventSerializer(many=True), **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, callID: str) -> Response:
        principal = principal_of(request)
        call = self.get_object()  # parties and operators, as for the call itself
        paginator = TimelinePagination()
        page: Any = paginator.paginate_queryset(
            CallEvent.objects.filter(call=call), request, view=self
        )
        return paginator.get_paginated_response(timeline.shaped(principal, call, page))

    @extend_schema(
        summary="Ask to be called back instead of waiting (the caller; the call ends)",
        request=CallbackAskSerializer,
        responses={201: CallbackAskedSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def callback(self, request: Request, callID: str) -> Response:
        body = CallbackAskSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        asked = callbacks.request_callback(
            principal_of(request), str(self.get_object().pk), body.validated_data.get("note")
        )
        return Response(
            {
                "callbackID": str(asked.pk),
                "state": asked.state,
                "callID": str(asked.call_id),
                "note": asked.note,
                "requestedAt": asked.requested_at.isoformat(),
            },
            status=status.HTTP_201_CREATED,
        )

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
        summary="Blind transfer (its operator only): the caller is held and the call rings the"
        " operator or queue named; you leave the call",
        request=TransferRequestSerializer,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        body = TransferRequestSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        transferring.transfer(principal_of(request), call, body.validated_data["to"])
        return self._call_response(call)

    @extend_schema(
        summary="Attended transfer, step 1 (its operator only): the caller is held and the "
        "operator or queue member named rings; once they answer (their offer to webrtc/offer) "
        "you talk to them, the caller hearing the hold audio",
        request=TransferRequestSerializer,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="consult")
    def consult(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        body = TransferRequestSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        consulting.consult(principal_of(request), call, body.validated_data["to"])
        return self._call_response(call)

    @extend_schema(
        summary="Complete the attended transfer (its operator only): the consulted operator "
        "and the caller talk, you leave the call",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="consult/complete")
    def complete_consult(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        consulting.complete(principal_of(request), call)
        return self._call_response(call)

    @extend_schema(
        summary="Cancel the consult (its operator, or the consulted operator hanging up): "
        "back to the caller and its operator",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="consult/cancel")
    def cancel_consult(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        consulting.cancel(principal_of(request), call)
        return self._call_response(call)

    @extend_schema(
        summary="Supervise another operator's active call (supervisors only): join it, or "
        "switch mode — monitor (hear both), whisper (the operator hears you), barge "
        "(three-way); then send your offer to webrtc/offer",
        request=SuperviseRequestSerializer,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="supervise")
    def supervise(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        body = json_object(request)
        supervision.supervise(principal_of(request), call, body.get("mode"))
        return self._call_response(call)

    @extend_schema(
        summary="Stop supervising the call (its supervisor only): your leg leaves it",
        request=None,
        responses={200: CallSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="supervise/stop")
    def stop_supervising(self, request: Request, callID: str) -> Response:
        call = self.get_object()
        supervision.stop(principal_of(request), call)
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
        plan, sdp = answer_offer(
            principal_of(request),
            callID,
            body.validated_data["sdp"],
            arrived=setup_trace.arrival_of(request._request),
        )
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


class DispositionListView(APIView):
    @extend_schema(
        summary="The disposition codes operators may pick (active ones, in order)",
        responses={200: DispositionCodeSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        notes.require_may_read(principal_of(request))
        codes = DispositionCode.objects.filter(active=True).prefetch_related("queues")
        return Response(DispositionCodeSerializer(codes, many=True).data)
