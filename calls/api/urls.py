from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from calls.api.callback_views import CallbackCallView, CallbackCloseView, CallbackListView
from calls.api.export_views import CallExportView
from calls.api.preflight_views import CallPreflightView, PreflightCreateView
from calls.api.queue_views import (
    MyStatusView,
    OperatorListView,
    OperatorStatsView,
    QueueDetailView,
    QueueListView,
    QueueStatsView,
)
from calls.api.recording_views import RecordingAudioView, RecordingListView
from calls.api.transcript_views import TranscriptSearchView, TranscriptView
from calls.api.views import (
    CallViewSet,
    DispositionListView,
    SessionCreateView,
    WebRtcConfigView,
)
from calls.api.voicemail_views import VoicemailListView
from calls.api.voisnap import VoisnapSessionCreateView

router = SimpleRouter(trailing_slash=False)  # the contract's paths have none
router.register("calls", CallViewSet, basename="call")

urlpatterns = [
    path("webrtc/config", WebRtcConfigView.as_view(), name="webrtc-config"),
    path("sessions", SessionCreateView.as_view(), name="session-create"),
    path("sessions/me/preflight", PreflightCreateView.as_view(), name="preflight-create"),
    path("calls/<uuid:callID>/preflight", CallPreflightView.as_view(), name="call-preflight"),
    path("v1/webrtc/sessions", VoisnapSessionCreateView.as_view(), name="voisnap-session-create"),
    path("operators", OperatorListView.as_view(), name="operator-list"),
    path("operators/me/status", MyStatusView.as_view(), name="operator-my-status"),
    path("operators/stats", OperatorStatsView.as_view(), name="operator-stats"),
    path("dispositions", DispositionListView.as_view(), name="disposition-list"),
    path("queues", QueueListView.as_view(), name="queue-list"),
    path("queues/<slug:publicId>", QueueDetailView.as_view(), name="queue-detail"),
    path("queues/<slug:publicId>/stats", QueueStatsView.as_view(), name="queue-stats"),
    path("callbacks", CallbackListView.as_view(), name="callback-list"),
    path("callbacks/<str:callbackID>/call", CallbackCallView.as_view(), name="callback-call"),
    path("callbacks/<str:callbackID>/close", CallbackCloseView.as_view(), name="callback-close"),
    path("calls/export", CallExportView.as_view(), name="call-export"),
    path("recordings", RecordingListView.as_view(), name="recording-list"),
    path(
        "recordings/<str:recordingID>/audio", RecordingAudioView.as_view(), name="recording-audio"
    ),
    path(
        "recordings/<str:recordingID>/transcript",
        TranscriptView.as_view(),
        name="recording-transcript",
    ),
    path("transcripts", TranscriptSearchView.as_view(), name="transcript-search"),
    path("voicemails", VoicemailListView.as_view(), name="voicemail-list"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
