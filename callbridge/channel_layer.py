"""The channel layer: `configured_layer()`, and the embedded set-up's layer (Channels'
in-memory layer, made to scale with sockets).

Channels' InMemoryChannelLayer sweeps every channel's queue and every group membership for
expired entries on each `receive` and each `group_send`, so delivering one message costs
time in proportion to the number of open sockets (bench/signaling_load.py, 300 sockets:
operators got `call.incoming` seconds after the caller got `call.ringing`). Messages expire
after a minute; sweeping at most once a second keeps that promise at constant cost.
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

SWEEP_EVERY_S = 1.0


def configured_layer() -> BaseChannelLayer:
    """The default channel layer (Channels' `get_channel_layer()`, never None here)."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer")
    return layer


class EmbeddedChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        # Private in Channels, so not in its stubs (tests/test_settings.py times the sweep).
        super()._clean_expired()  # type: ignore[misc]
