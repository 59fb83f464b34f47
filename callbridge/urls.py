from django.contrib import admin
from django.urls import include, path

from calls.api.metrics_views import metrics_view
from calls.api.voisnap import HubNegotiateView
from calls.pages.views import dashboard

urlpatterns = [
    path("admin/dashboard/", dashboard, name="operator-dashboard"),
    path("admin/", admin.site.urls),
    path("api/", include("calls.api.urls")),
    path("call/", include("calls.api.wago_urls")),
    # Voisnap's WebRtcHub: negotiate here, the WebSocket in calls.consumers.routing.
    path("hubs/webrtc/negotiate", HubNegotiateView.as_view(), name="webrtc-hub-negotiate"),
    # Prometheus (token or allowed addresses; 404 until one is configured).
    path("metrics", metrics_view, name="metrics"),
    path("", include("calls.pages.urls")),
]

# JSON error bodies under /api/ (HTML elsewhere).
handler404 = "calls.api.errors.not_found_view"
handler500 = "calls.api.errors.server_error_view"
