from django.urls import path

from calls.api.wago import (
    WagoCloseView,
    WagoConfigView,
    WagoHangupView,
    WagoMakeView,
    WagoOfferView,
    WagoPlayView,
    WagoRecordView,
)

urlpatterns = [
    path("webrtc/config", WagoConfigView.as_view(), name="wago-webrtc-config"),
    path("webrtc/offer", WagoOfferView.as_view(), name="wago-webrtc-offer"),
    path("webrtc/close", WagoCloseView.as_view(), name="wago-webrtc-close"),
    path("make", WagoMakeView.as_view(), name="wago-make"),
    path("hangup", WagoHangupView.as_view(), name="wago-hangup"),
    path("record", WagoRecordView.as_view(), name="wago-record"),
    path("play", WagoPlayView.as_view(), name="wago-play"),
]
