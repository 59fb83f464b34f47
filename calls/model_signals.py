"""Signals other parts listen to (ring timer now; WebSocket fan-out later).

Sent after the transaction commits, so listeners only ever see durable facts.
"""

from django.dispatch import Signal

# kwargs: event (CallEvent)
call_event_recorded = Signal()

# kwargs: pks (list of primary keys). Sent by ApiToken / EndUserSession querysets' revoke()
# (the model's revoke() and the admin's bulk action go through it).
credentials_revoked = Signal()
