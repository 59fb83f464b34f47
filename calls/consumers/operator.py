"""/ws/operator: the live feed of every call, end-user presence and operator status, for
operators only. What an operator sends here: their availability
(`{"type": "status", "availability": "available" | "away" | "offline"}`) and the in-call
controls of REST (`{"type": "hold" | "resume" | "monitor" | "whisper" | "barge" |
"stopSupervising" | "completeConsult" | "cancelConsult", "callID": …}`, `{"type":
"transfer" | "consult", "callID": …, "to": {"operator": username} | {"queue": id}}`, table
CALL_VERBS); the feed's events are the answer (`operator.status`, `call.held`, …), a refusal is an
`error` (with `callSid` when it names a call).

An operator is an active staff user holding `calls.operate_calls` (calls.operators). The
feed stands on one staff login (one browser's Django session): a logout there, the user
deactivated, demoted, deleted or given a new password closes it (calls.revocation).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from calls import (
    availability,
    callbacks,
    consult,
    events,
    hold,
    revocation,
    supervision,
    transfer,
)
from calls.calling import parse_uuid
from calls.consumers import throttle
from calls.consumers.credential_watch import CredentialWatch
from calls.consumers.dispatch import EventsWithoutDatabaseHop
from calls.errors import CallbridgeError, ErrorCode
from calls.events import OPERATORS_GROUP
from calls.models import Availability, Call
from calls.principals import Principal
from calls.signaling import payloads, protocol

# The in-call controls this socket takes, as REST's (the same functions, the same checks),
# each given the whole message (transfer reads its `to`).
CALL_VERBS: dict[str, Callable[[Principal, Call, dict[str, Any]], object]] = {
    "hold": lambda principal, call, _: hold.hold(principal, call),
    "resume": lambda principal, call, _: hold.resume(principal, call),
    "transfer": lambda principal, call, message: transfer.transfer(
        principal, call, message.get("to")
    ),
    "monitor": lambda principal, call, _: supervision.supervise(principal, call, "monitor"),
    "whisper": lambda principal, call, _: supervision.supervise(principal, call, "whisper"),
    "barge": lambda principal, call, _: supervision.supervise(principal, call, "barge"),
    "stopSupervising": lambda principal, call, _: supervision.stop(principal, call),
    "consult": lambda principal, call, message: consult.consult(principal, call, message.get("to")),
    "completeConsult": lambda principal, call, _: consult.complete(principal, call),
    "cancelConsult": lambda principal, call, _: consult.cancel(principal, call),
}


class OperatorConsumer(EventsWithoutDatabaseHop, CredentialWatch, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.slots = throttle.SocketSlots()
        self.user_pk: int | None = None
        self.session_key: str | None = None
        # Every handshake counts against its address, refused logins included.
        if limited := throttle.check_handshake(throttle.client_ip(self.scope)):
            await self._refuse(limited)
            return
        self.user_pk = getattr(user, "pk", None)
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        standing = await self.current_standing()
        if not standing.alive:
            await self.close(code=4403)
            return
        self.staff_id = f"staff-{self.user_pk}"  # Principal.staff(user).pk: /ws/signal's key too
        limited = self.slots.take_address(
            throttle.client_ip(self.scope)
        ) or self.slots.take_credential(self.staff_id)
        if limited:
            await self._refuse(limited)
            return
        await self.watch_credential(
            revocation.staff_groups(self.user_pk, self.session_key or ""), standing
        )
        # Before accepting: the snapshot lists no stale request, and follows the open at once
        # (a page takes the open as "live" and draws from the snapshot).
        await database_sync_to_async(callbacks.expire_stale)()
        await self.channel_layer.group_add(OPERATORS_GROUP, self.channel_name)
        await self.accept()
        await self._send(await database_sync_to_async(events.feed_snapshot)())

    async def _refuse(self, limited: CallbridgeError) -> None:
        await self.accept()
        await self._send(protocol.error("", limited))
        await self.close(code=throttle.CLOSE_RATE_LIMITED)

    async def disconnect(self, code: int) -> None:
        self.slots.release()
        throttle.socket_closed(self.channel_name)
        await self.stop_watching()
        await self.leave_groups()

    async def current_standing(self) -> revocation.Standing:
        if self.user_pk is None:
            return revocation.Standing("Staff login required")
        return await database_sync_to_async(revocation.staff_standing)(
            self.session_key, self.user_pk
        )

    async def leave_groups(self) -> None:
        await self.channel_layer.group_discard(OPERATORS_GROUP, self.channel_name)
        await super().leave_groups()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not await self.credential_alive():
            return
        ip = throttle.client_ip(self.scope)
        error = throttle.check_message(ip, self.channel_name, self.staff_id)
        call_sid = ""
        if error is None:
            error, call_sid = await self._request(text_data)
        if error is not None:
            await self._send(protocol.error("", error, call_sid=call_sid))

    async def _request(self, text_data: str | None) -> tuple[CallbridgeError | None, str]:
        """`{"type": "status", "availability": …}`: the operator sets their availability;
        the change reaches every feed (this one too) as `operator.status`. A call verb
        (`hold`, `resume`): done as REST does it; the feed tells the outcome (`call.held`).
        Returns the refusal, if any, and the call it is about ("" if none)."""
        limit = settings.CALLBRIDGE_WS_MAX_MESSAGE_BYTES
        if text_data is None or len(text_data.encode("utf-8", "surrogatepass")) > limit:
            return CallbridgeError(ErrorCode.INVALID_MESSAGE, "send small JSON text frames"), ""
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # deep nesting is a RecursionError
            return CallbridgeError(ErrorCode.INVALID_MESSAGE, "messages are JSON objects"), ""
        if not isinstance(message, dict):
            return CallbridgeError(ErrorCode.INVALID_MESSAGE, "messages are JSON objects"), ""
        call_id: uuid.UUID | None = None
        try:
            kind = payloads.operator_request_type(message)
            if kind == "status":
                wanted = payloads.parse_status_request(message, Availability.values)
                await database_sync_to_async(self._set_availability)(wanted)
            else:
                no_call = CallbridgeError(ErrorCode.NOT_FOUND, "No such call")
                call_id = parse_uuid(payloads.parse_call_verb(message), no_call)
                await database_sync_to_async(self._call_verb)(kind, call_id, message)
        except CallbridgeError as error:
            return error, str(call_id or "")
        return None, ""

    def _principal(self) -> Principal:
        user = get_user_model().objects.filter(pk=self.user_pk or 0).first()
        if user is None:
            raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Staff login required")
        return Principal.staff(user)

    def _set_availability(self, wanted: str) -> None:
        availability.set_availability(self._principal(), wanted)

    def _call_verb(self, kind: str, call_id: uuid.UUID, message: dict[str, Any]) -> None:
        principal = self._principal()
        call = Call.objects.filter(pk=call_id).first()
        if call is None:
            raise CallbridgeError(ErrorCode.NOT_FOUND, "No such call")
        CALL_VERBS[kind](principal, call, message)

    async def call_event(self, message: dict[str, Any]) -> None:
        if self.credential_usable_now():
            await self._send(payloads.feed_event(payloads.call_event_from_message(message)))

    async def presence_event(self, message: dict[str, Any]) -> None:
        if self.credential_usable_now():
            session = payloads.session_from_message(message["session"])
            await self._send(payloads.presence_event(session))

    async def operator_status(self, message: dict[str, Any]) -> None:
        if self.credential_usable_now():
            status = payloads.operator_status_from_message(message["status"])
            await self._send(payloads.operator_status_event(status))

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))
