"""REST: callback requests. The caller asks (`POST /api/calls/{id}/callback`, in
calls.api.views); operators list them, call back and close them here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import callbacks
from calls.api.serializers import CallbackCloseSerializer, CallbackSerializer, CallSerializer
from calls.api.views import ERRORS, json_object, principal_of
from calls.errors import CallbridgeError, ErrorCode
from calls.events import callback_snapshot
from calls.models import Call, CallbackRequest, CallbackState
from calls.models.callback import PENDING_STATES
from calls.signaling.payloads import callback_summary

LIST_LIMIT = 500


def summary(request: CallbackRequest) -> dict[str, Any]:
    return callback_summary(callback_snapshot(request))


class CallbackListView(APIView):
    @extend_schema(
        summary="Callback requests of your queues (all of them for supervisors and API tokens)",
        parameters=[
            OpenApiParameter(
                "state",
                str,
                description="comma-separated states (default: open,calling): "
                + ", ".join(CallbackState.values),
            ),
            OpenApiParameter("queue", str, description="one queue's public id"),
        ],
        responses={200: CallbackSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        callbacks.expire_stale()
        requests = callbacks.visible_to(principal)
        wanted = [s.strip() for s in request.query_params.get("state", "").split(",") if s.strip()]
        unknown = [state for state in wanted if state not in CallbackState.values]
        if unknown:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, f"state: unknown state {unknown[0]!r}"
            )
        requests = requests.filter(state__in=wanted or PENDING_STATES)
        if queue := request.query_params.get("queue"):
            requests = requests.filter(queue__public_id=queue)
        # Open first, then the longest waiting first (the order to call them back in).
        ordered = sorted(
            requests.order_by("requested_at", "id")[:LIST_LIMIT],
            key=lambda r: r.state != CallbackState.OPEN,
        )
        return Response([summary(r) for r in ordered])


class CallbackCallView(APIView):
    @extend_schema(
        summary="Call the end user back: rings their page (then send your offer to the call)",
        request=None,
        responses={201: CallSerializer, **ERRORS},
    )
    def post(self, request: Request, callbackID: str) -> Response:
        principal = principal_of(request)
        callback, call = callbacks.call_back(principal, callbackID)
        fresh = Call.objects.select_related("queue").get(pk=call.pk)
        body = CallSerializer(fresh, context={"principal": principal}).data
        fresh_callback = callbacks.visible_to(principal).get(pk=callback.pk)
        return Response({**body, "callback": summary(fresh_callback)}, status.HTTP_201_CREATED)


class CallbackCloseView(APIView):
    @extend_schema(
        summary="Mark a request done or cancelled by hand",
        request=CallbackCloseSerializer,
        responses={200: CallbackSerializer, **ERRORS},
    )
    def post(self, request: Request, callbackID: str) -> Response:
        principal = principal_of(request)
        body = CallbackCloseSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        callback = callbacks.close(principal, callbackID, body.validated_data["outcome"])
        return Response(summary(callbacks.visible_to(principal).get(pk=callback.pk)))
