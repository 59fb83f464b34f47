"""WaGo-compatible aliases: the same behaviour under WaGo's paths and bodies (`token:` header).

WaGo's browser example (fetch config → offer with complete gathering → answer) works
against these with only its base URL, token and call id changed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import calling, playback
from calls.api.serializers import (
    AnswerSerializer,
    CallCreateSerializer,
    CallSerializer,
    ErrorSerializer,
    IceConfigSerializer,
    OfferSerializer,
    PlaybackSerializer,
    RecordingSerializer,
)
from calls.api.views import (
    ERRORS,
    WebRtcConfigView,
    json_object,
    principal_of,
    start_call_from_request,
)
from calls.api.webrtc import answer_offer, close_media
from calls.ice import ice_configuration
from calls.models import Call
from calls.principals import Principal
from calls.recordings import start_recording, wago_file_name


class CallIdSerializer(serializers.Serializer):
    callID = serializers.UUIDField()


class WagoOfferSerializer(OfferSerializer, CallIdSerializer):
    pass


class WagoAnswerSerializer(AnswerSerializer):
    turn = serializers.DictField()


def _call_body(call: Call, viewer: Principal) -> dict[str, Any]:
    fresh = Call.objects.prefetch_related("legs__user").get(pk=call.pk)
    return CallSerializer(fresh, context={"principal": viewer}).data


def _call_id(request: Request) -> str:
    body = CallIdSerializer(data=json_object(request))
    body.is_valid(raise_exception=True)
    return str(body.validated_data["callID"])


class WagoConfigView(WebRtcConfigView):
    @extend_schema(
        summary="WaGo: ICE servers (same as /api/webrtc/config)",
        responses={200: IceConfigSerializer, **ERRORS},
        operation_id="wago_webrtc_config",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class WagoOfferView(APIView):
    @extend_schema(
        summary="WaGo: send an SDP offer for a call",
        request=WagoOfferSerializer,
        responses={200: WagoAnswerSerializer, 502: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = WagoOfferSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        principal = principal_of(request)
        plan, sdp = answer_offer(
            principal, str(body.validated_data["callID"]), body.validated_data["sdp"]
        )
        turn = ice_configuration(principal.pk)["turn"]
        return Response(
            {
                "callID": str(plan.call_id),
                "type": "answer",
                "sdp": sdp,
                "sessionId": str(plan.leg_id),
                "turn": turn,
            }
        )


class WagoCloseView(APIView):
    @extend_schema(
        summary="WaGo: close this party's media bridge (the call stays)",
        request=CallIdSerializer,
        responses={200: CallSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        call = calling.call_for(principal, _call_id(request))
        close_media(principal, call)
        return Response(_call_body(call, principal_of(request)))


class WagoRecordSerializer(serializers.Serializer):
    CallID = serializers.UUIDField()
    Path = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="files/calls/NAME.wav or NAME.wav (kept in the recordings folder); "
        "empty: {callID}.wav",
    )


class WagoRecordView(APIView):
    @extend_schema(
        summary="WaGo: record a call (Path: files/calls/NAME.wav or NAME.wav, never elsewhere)",
        request=WagoRecordSerializer,
        responses={201: RecordingSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = WagoRecordSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        principal = principal_of(request)
        path = body.validated_data.get("Path") or ""
        name = wago_file_name(path) if path else None  # a bad Path changes nothing
        call = calling.call_for(principal, str(body.validated_data["CallID"]))
        recording = start_recording(principal, call, name)
        return Response(RecordingSerializer(recording).data, status=status.HTTP_201_CREATED)


class WagoPlaySerializer(CallIdSerializer):
    file = serializers.CharField(max_length=100)
    to = serializers.ChoiceField(choices=playback.TARGETS, default="user")


class WagoPlayView(APIView):
    @extend_schema(
        summary="WaGo: play a library file (.mp3 .wav .opus .ogg) to the end user, or `to`",
        request=WagoPlaySerializer,
        responses={200: PlaybackSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = WagoPlaySerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        principal = principal_of(request)
        call = calling.call_for(principal, str(body.validated_data["callID"]))
        return Response(
            playback.play(principal, call, body.validated_data["file"], body.validated_data["to"])
        )


class WagoMakeView(APIView):
    @extend_schema(
        summary="WaGo: place a call (same as POST /api/calls)",
        request=CallCreateSerializer,
        responses={201: CallSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        call = start_call_from_request(principal_of(request), json_object(request))
        return Response(_call_body(call, principal_of(request)), status=status.HTTP_201_CREATED)


class WagoHangupView(APIView):
    @extend_schema(
        summary="WaGo: hang up a call",
        request=CallIdSerializer,
        responses={200: CallSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        call = calling.hang_up(principal_of(request), _call_id(request))
        return Response(_call_body(call, principal_of(request)))
