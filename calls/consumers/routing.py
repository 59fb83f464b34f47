from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from calls.consumers.operator import OperatorConsumer
from calls.consumers.origins import PageOriginValidator
from calls.consumers.signal import SignalConsumer
from calls.consumers.webrtc_hub import WebRtcHubConsumer
from calls.signaling.dialects import POLYAI


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other path: refuse the handshake (instead of a router exception in the logs)."""

    async def connect(self) -> None:
        await self.close(code=4404)


websocket_urlpatterns = [
    # Token-authenticated: non-browser clients (no Origin header) are welcome.
    path("ws/signal", PageOriginValidator(SignalConsumer.as_asgi(), allow_no_origin=True)),
    # PolyAI's WebRTC gateway path: the same envelope in PolyAI's dialect (docs/migrating.md).
    path(
        "api/v1/webrtc/signal",
        PageOriginValidator(SignalConsumer.as_asgi(dialect=POLYAI), allow_no_origin=True),
    ),
    path("hubs/webrtc", PageOriginValidator(WebRtcHubConsumer.as_asgi(), allow_no_origin=True)),
    # Cookie-authenticated: only pages from allowed origins.
    path(
        "ws/operator",
        PageOriginValidator(AuthMiddlewareStack(OperatorConsumer.as_asgi()), allow_no_origin=False),
    ),
    # django-stubs type path()'s target as a Django view; Channels routes ASGI apps too.
    re_path(r"", NoSuchSocket.as_asgi()),  # type: ignore[arg-type]
]
