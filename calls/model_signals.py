"""Signals other parts listen to (ring timer now; WebSocket fan-out later).

Sent after the transaction commits, so listeners only ever see durable facts.
"""

from django.dispatch import Signal

# kwargs: event (CallEvent)
call_event_recorded = Signal()

# kwargs: pks (list of primary keys). Sent by ApiToken / EndUserSession querysets' revoke()
# (the model's revoke() and the admin's bulk action go through it).
credentials_revoked = Signal()

# kwargs: user_id. An operator's availability or activity changed (the feed's
# `operator.status`); whoever changes what `calls.models.activity` derives from sends it.
operator_status_changed = Signal()

# kwargs: user_id. An operator became available: the routing engine offers them calls.
operator_available = Signal()

# No kwargs. Webhook deliveries were queued (after commit): this process's sender looks now.
webhooks_queued = Signal()
