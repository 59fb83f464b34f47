from channels.auth import AuthMiddlewareStack
from django.urls import path

from calls.consumers.operator import OperatorConsumer
from calls.consumers.origins import PageOriginValidator
from calls.consumers.signal import SignalConsumer

websocket_urlpatterns = [
    # Token-authenticated: non-browser clients (no Origin header) are welcome.
    path("ws/signal", PageOriginValidator(SignalConsumer.as_asgi(), allow_no_origin=True)),
    # Cookie-authenticated: only pages from allowed origins.
    path(
        "ws/operator",
        PageOriginValidator(AuthMiddlewareStack(OperatorConsumer.as_asgi()), allow_no_origin=False),
    ),
]
