"""REST: operators' availability (their own, everyone's) and the queues with waiting callers.

Readable by operators (staff and API tokens); availability is set by staff operators
only, for themselves: an API token has none (calls.availability).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import availability, policy, queue_stats
from calls.api.serializers import (
    AvailabilitySerializer,
    OperatorStatsSerializer,
    OperatorStatusSerializer,
    QueueDetailSerializer,
    QueueSerializer,
    QueueStatsSerializer,
)
from calls.api.views import ERRORS, json_object, principal_of
from calls.models import Queue


class MyStatusView(APIView):
    @extend_schema(
        summary="Your availability and activity (staff operators)",
        responses={200: OperatorStatusSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        user = availability.require_staff_operator(principal_of(request))
        return Response(OperatorStatusSerializer(availability.view_of(user)).data)

    @extend_schema(
        summary="Set your availability: available, away or offline (staff operators)",
        request=AvailabilitySerializer,
        responses={200: OperatorStatusSerializer, **ERRORS},
    )
    def put(self, request: Request) -> Response:
        principal = principal_of(request)
        availability.require_staff_operator(principal)
        body = AvailabilitySerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        view = availability.set_availability(principal, body.validated_data["availability"])
        return Response(OperatorStatusSerializer(view).data)


class OperatorListView(APIView):
    @extend_schema(
        summary="Every operator's availability and activity (operators)",
        responses={200: OperatorStatusSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        policy.require_operator(principal_of(request), "do that")
        return Response(OperatorStatusSerializer(availability.all_operators(), many=True).data)


def _queues() -> Any:
    return Queue.objects.select_related("overflow_queue", "voicemail_greeting")


class QueueListView(APIView):
    @extend_schema(
        summary="The queues, with callers waiting now and the longest wait (operators)",
        responses={200: QueueSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        policy.require_operator(principal_of(request), "do that")
        views = availability.queue_views(list(_queues()))
        return Response(QueueSerializer(views, many=True).data)


class QueueDetailView(APIView):
    @extend_schema(
        summary="One queue, with its members' availability and activity (operators)",
        parameters=[OpenApiParameter("publicId", str, OpenApiParameter.PATH)],
        responses={200: QueueDetailSerializer, **ERRORS},
    )
    def get(self, request: Request, publicId: str) -> Response:
        policy.require_operator(principal_of(request), "do that")
        return Response(QueueDetailSerializer(availability.queue_detail(publicId)).data)


PERIOD = [
    OpenApiParameter(
        "since",
        str,
        OpenApiParameter.QUERY,
        description="ISO 8601 date or date-time (naive: the server's time zone); "
        "default: the start of today",
    ),
    OpenApiParameter(
        "until",
        str,
        OpenApiParameter.QUERY,
        description="ISO 8601 date (to the end of that day) or date-time; "
        "default: the end of today",
    ),
]


def _period(request: Request) -> queue_stats.Period:
    return queue_stats.parse_period(
        request.query_params.get("since"), request.query_params.get("until")
    )


class QueueStatsView(APIView):
    @extend_schema(
        summary="A queue's statistics over a period: service level, abandoned, waits (operators)",
        parameters=[OpenApiParameter("publicId", str, OpenApiParameter.PATH), *PERIOD],
        responses={200: QueueStatsSerializer, **ERRORS},
    )
    def get(self, request: Request, publicId: str) -> Response:
        policy.require_operator(principal_of(request), "do that")
        period = _period(request)
        stats = queue_stats.queue_stats([Queue.objects.named(publicId)], period)[0]
        return Response(QueueStatsSerializer(stats).data)


class OperatorStatsView(APIView):
    @extend_schema(
        summary="Every operator's answered calls, missed offers and talk time (operators)",
        parameters=[
            *PERIOD,
            OpenApiParameter(
                "queue",
                str,
                OpenApiParameter.QUERY,
                description="only this queue's calls and offers, and its members",
            ),
        ],
        responses={200: OperatorStatsSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        policy.require_operator(principal_of(request), "do that")
        period = _period(request)
        public_id = request.query_params.get("queue")
        queue = Queue.objects.named(public_id) if public_id else None
        stats = queue_stats.operator_stats(period, queue)
        return Response(OperatorStatsSerializer(stats, many=True).data)
