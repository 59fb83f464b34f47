from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from calls.api.views import CallViewSet, SessionCreateView, WebRtcConfigView

router = SimpleRouter(trailing_slash=False)  # the contract's paths have none
router.register("calls", CallViewSet, basename="call")

urlpatterns = [
    path("webrtc/config", WebRtcConfigView.as_view(), name="webrtc-config"),
    path("sessions", SessionCreateView.as_view(), name="session-create"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
