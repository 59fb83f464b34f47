"""Call events reach sockets without waiting on the database thread.

Channels 4 runs `close_old_connections()` through `sync_to_async` before every message a
consumer handles. Sync code runs in one shared thread, the thread every consumer's
database work queues on, so under load each event to each socket waited its turn behind
that work: with 300 sockets, operators got `call.incoming` ~10 s after the caller got
`call.ringing` (bench/signaling_load.py). The handlers named here never touch the ORM, so
they skip that hop; every other message keeps Channels' behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.consumer import AsyncConsumer, get_handler_name

# Channel-layer messages published by calls.events: formatted and sent, nothing read.
WITHOUT_DATABASE = frozenset({"call.event", "presence.event", "queue.waiting"})


# A mixin for consumers: mypy checks it as one (super().dispatch is the consumer's).
if TYPE_CHECKING:
    _Consumer = AsyncConsumer
else:
    _Consumer = object


class EventsWithoutDatabaseHop(_Consumer):
    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in WITHOUT_DATABASE:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)
