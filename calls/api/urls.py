from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from calls.api.queue_views import (
    MyStatusView,
    OperatorListView,
    OperatorStatsView,
    QueueDetailView,
    QueueListView,
    QueueStatsView,
)
from calls.api.views import CallViewSet, SessionCreateView, WebRtcConfigView
from calls.api.voicemail_views import VoicemailListView

router = SimpleRouter(trailing_slash=False)  # the contract's paths have none
router.register("calls", CallViewSet, basename="call")

urlpatterns = [
    path("webrtc/config", WebRtcConfigView.as_view(), name="webrtc-config"),
    path("sessions", SessionCreateView.as_view(), name="session-create"),
    path("operators", OperatorListView.as_view(), name="operator-list"),
    path("operators/me/status", MyStatusView.as_view(), name="operator-my-status"),
    path("operators/stats", OperatorStatsView.as_view(), name="operator-stats"),
    path("queues", QueueListView.as_view(), name="queue-list"),
    path("queues/<slug:publicId>", QueueDetailView.as_view(), name="queue-detail"),
    path("queues/<slug:publicId>/stats", QueueStatsView.as_view(), name="queue-stats"),
    path("voicemails", VoicemailListView.as_view(), name="voicemail-list"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
