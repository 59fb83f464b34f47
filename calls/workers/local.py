"""Builds this process's media worker from the settings (embedded in daphne, or the
`mediaworker` command's own)."""

from __future__ import annotations

from aiortc import RTCIceServer
from django.conf import settings

from callbridge.channel_layer import configured_layer
from calls.media.aiortc_internals import (
    advertise_host_addresses,
    end_ice_pacing_when_done,
    share_dtls_certificate,
    use_numpy_audio_level,
)
from calls.media.candidates import CandidateRules, parse_networks
from calls.media.peer import PeerSettings
from calls.media.worker import MediaWorker
from calls.workers.reporter import DatabaseLegReporter


def build_media_worker(name: str = "", host_addresses: list[str] | None = None) -> MediaWorker:
    """This process's media worker (default: the embedded one, as configured)."""
    addresses = settings.CALLBRIDGE_ICE_HOST_ADDRESSES if host_addresses is None else host_addresses
    advertise_host_addresses(addresses)
    use_numpy_audio_level()
    end_ice_pacing_when_done()
    share_dtls_certificate()
    stun = tuple(RTCIceServer(urls=url) for url in settings.CALLBRIDGE_STUN_URLS)
    return MediaWorker(
        name=name or settings.CALLBRIDGE_MEDIA_WORKER_NAME,
        layer=configured_layer(),
        reporter=DatabaseLegReporter(),
        peer_settings=PeerSettings(
            ice_servers=stun,
            ice_timeout_s=settings.CALLBRIDGE_ICE_TIMEOUT_S,
            quality_interval_s=settings.CALLBRIDGE_QUALITY_INTERVAL_S,
            forwarding=settings.CALLBRIDGE_MEDIA_PATH == "forward",
            candidate_rules=CandidateRules(
                max_remote=settings.CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES,
                allowed_networks=parse_networks(settings.CALLBRIDGE_ICE_ALLOWED_NETWORKS),
            ),
        ),
    )
