"""ASGI entry point: HTTP (Django) and the WebSockets (/ws/signal, /ws/operator)."""

from __future__ import annotations

import os

from callbridge.http_handler import get_one_hop_asgi_application
from callbridge.private_files import restrict_new_files

restrict_new_files()  # before settings create the data dir (any ASGI server)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbridge.settings")
django_asgi_app = get_one_hop_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (after Django set-up)

from callbridge.client_address import ClientAddressMiddleware  # noqa: E402
from callbridge.lifespan import ServicesLifespan  # noqa: E402
from calls import setup_trace  # noqa: E402
from calls.consumers.routing import websocket_urlpatterns  # noqa: E402

# types-channels wants its own pattern type here, which Django's path() never returns.
websocket_app = URLRouter(websocket_urlpatterns)  # type: ignore[arg-type]
# The client address is settled once, before anything reads it (HTTP and WebSocket alike).
http_app = setup_trace.StampArrival(django_asgi_app) if setup_trace.enabled() else django_asgi_app
application = ServicesLifespan(
    ClientAddressMiddleware(ProtocolTypeRouter({"http": http_app, "websocket": websocket_app}))
)
