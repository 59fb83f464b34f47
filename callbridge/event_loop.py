"""The event loop every callbridge process runs on (CALLBRIDGE_EVENT_LOOP).

uvloop relays a UDP packet in about a third of the time of asyncio's own loop (7-10 µs
against 25-30 µs, measured on the development machine), and the forwarding media path is
mostly that. Daphne creates its loop when Django imports it (while loading the
apps), so the choice is made in manage.py before anything else.
"""

from __future__ import annotations

import asyncio


def use_configured_event_loop() -> str:
    from django.conf import settings

    choice: str = settings.CALLBRIDGE_EVENT_LOOP
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return choice
