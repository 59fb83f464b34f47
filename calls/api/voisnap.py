"""Voisnap's paths over the same behaviour: `POST /api/v1/webrtc/sessions` and the
WebRtcHub's negotiate request (`POST /hubs/webrtc/negotiate`).

The hub itself is a WebSocket (calls.consumers.webrtc_hub). Its negotiate request comes
from the integrator's page with credentials (the official SignalR client's default), so
its CORS answer names the exact allowed origin and allows credentials; the hub reads no
cookie, so that allows nothing more. The rest of the API keeps django-cors-headers'
answer without credentials.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import calling
from calls.api.serializers import (
    VoisnapSessionCreatedSerializer,
    VoisnapSessionCreateSerializer,
)
from calls.api.throttling import ClientIpGate
from calls.api.views import ERRORS, create_session, json_object, principal_of
from calls.authn import hub_connection_token, principal_for_hub
from calls.consumers.origins import parse_origin


class VoisnapSessionCreateView(APIView):
    @extend_schema(
        summary="Voisnap: an end-user session for the WebRtcHub, calling one agent",
        description="`agentId` is a queue's public id (its operators answer) or `echo`. "
        "The session token is shown once; TURN credentials end with the session.",
        request=VoisnapSessionCreateSerializer,
        responses={201: VoisnapSessionCreatedSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        body = VoisnapSessionCreateSerializer(data=json_object(request))
        body.is_valid(raise_exception=True)
        agent = body.validated_data["agentId"]
        calling.require_agent(agent)
        session, token, ice = create_session(
            principal,
            ttl_seconds=settings.CALLBRIDGE_SESSION_TTL_S,
            metadata=body.validated_data.get("metadata"),
            agent=agent,
        )
        return Response(
            {
                "sessionId": str(session.pk),
                "sessionToken": token,
                "expiresAt": session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "iceServers": ice["iceServers"],
            },
            status=status.HTTP_201_CREATED,
        )


# The official client's negotiate request: POST with these headers, credentials included.
HUB_ALLOWED_HEADERS = "authorization, content-type, x-requested-with, x-signalr-user-agent"


def _allowed_origin(origin: str | None) -> str | None:
    parsed = parse_origin(origin) if origin else None
    if parsed is None:
        return None
    if any(parsed == parse_origin(allowed) for allowed in settings.CORS_ALLOWED_ORIGINS):
        return origin
    return None


class HubNegotiateView(APIView):
    """`POST /hubs/webrtc/negotiate?negotiateVersion=1&sessionToken=…`: a connection token
    for the WebSocket, which is the only transport offered."""

    authentication_classes = [ClientIpGate]  # the per-IP limit before the token lookup
    permission_classes = [AllowAny]  # the token travels in the query string, read below
    throttle_classes: list[Any] = []
    renderer_classes = [JSONRenderer]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        principal = principal_for_hub(
            request.query_params.get("sessionToken"), request.query_params.get("access_token")
        )
        token = hub_connection_token(principal)
        version = request.query_params.get("negotiateVersion", "0")
        transports = [{"transport": "WebSockets", "transferFormats": ["Text"]}]
        if version == "0":  # old clients connect with the connection id itself
            return Response({"connectionId": token, "availableTransports": transports})
        return Response(
            {
                "negotiateVersion": 1,
                "connectionId": uuid.uuid4().hex,  # names the connection, opens nothing
                "connectionToken": token,
                "availableTransports": transports,
            }
        )

    @extend_schema(exclude=True)
    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        return Response(status=status.HTTP_204_NO_CONTENT)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Vary"] = "Origin"
        origin = _allowed_origin(request.headers.get("Origin"))
        if origin is not None:  # errors too: the page may read why it was refused
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Credentials"] = "true"
            if request.method == "OPTIONS":
                response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                response["Access-Control-Allow-Headers"] = HUB_ALLOWED_HEADERS
                response["Access-Control-Max-Age"] = "600"
        return response
