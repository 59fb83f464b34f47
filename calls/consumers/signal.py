"""/ws/signal and PolyAI's gateway path: WebRTC signaling in PolyAI's envelope. Thin:
authenticate, dispatch, reply. What differs between the two paths is the consumer's
`dialect` (calls.signaling.dialects), not a check of the path here."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import uuid
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from calls import callbacks, calling, revocation, voicemail
from calls.authn import principal_for_token
from calls.calling import LegRef, OfferPlan
from calls.consumers import throttle
from calls.consumers.credential_watch import CredentialWatch
from calls.consumers.dispatch import EventsWithoutDatabaseHop
from calls.errors import CallbridgeError, ErrorCode
from calls.events import OPERATORS_GROUP, call_group, publish_presence, session_group
from calls.models import CallState, Leg
from calls.principals import Principal
from calls.routing import waiting
from calls.signaling import dialects, payloads, protocol
from calls.workers import link
from calls.workers import protocol as worker_protocol

logger = logging.getLogger(__name__)


def _address(text: str) -> str | None:
    """An IP address for an audit row ("unknown" when the server has none)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _register_socket(principal: Principal) -> None:
    session = principal.session
    if session is not None and session.socket_opened():
        publish_presence(session)


def _unregister_socket(principal: Principal) -> None:
    session = principal.session
    if session is not None and session.socket_closed():
        publish_presence(session)


class SignalConsumer(EventsWithoutDatabaseHop, CredentialWatch, AsyncWebsocketConsumer):
    """Signed in by the first `register`/`offer`; from then on every message re-reads the
    credential (calls.revocation), and a credential that dies closes the socket."""

    def __init__(
        self, *args: Any, dialect: dialects.Dialect = dialects.CALLBRIDGE, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.dialect = dialect

    async def connect(self) -> None:
        self.principal: Principal | None = None
        self.registered = False
        self.legs: dict[str, LegRef] = {}  # leg id → leg this socket speaks for
        self.offers: dict[str, OfferPlan] = {}  # request id → offer awaiting the worker
        self.groups_joined: set[str] = set()
        self.seen_events: deque[int] = deque(maxlen=512)
        self.client_ip = throttle.client_ip(self.scope)
        self.slots = throttle.SocketSlots()
        self.sign_in_timer: asyncio.Task[None] | None = None
        await self.accept()
        limited = throttle.check_handshake(self.client_ip) or self.slots.take_address(
            self.client_ip
        )
        if limited:
            await self._send(protocol.error("", limited))
            await self.close(code=throttle.CLOSE_RATE_LIMITED)
            return
        self.sign_in_timer = asyncio.create_task(self._close_unless_signed_in())

    async def _close_unless_signed_in(self) -> None:
        await asyncio.sleep(settings.CALLBRIDGE_WS_SIGN_IN_DEADLINE_S)
        if self.principal is None:
            await self._send(protocol.error("", throttle.sign_in_deadline_passed()))
            await self.close(code=throttle.CLOSE_UNAUTHORIZED)

    async def disconnect(self, code: int) -> None:
        if self.sign_in_timer is not None:
            self.sign_in_timer.cancel()
        self.slots.release()
        throttle.socket_closed(self.channel_name)
        await self.stop_watching()
        await self.leave_groups()
        if self.registered and self.principal is not None:
            await database_sync_to_async(_unregister_socket)(self.principal)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        principal_id = self.principal.pk if self.principal is not None else None
        if limited := throttle.check_message(self.client_ip, self.channel_name, principal_id):
            await self._send(protocol.error("", limited))  # no parsing: floods stay cheap
            return
        # Signed in: whatever this message is, the credential must still be good now.
        if self.principal is not None and not await self.credential_alive():
            return
        try:
            limit = settings.CALLBRIDGE_WS_MAX_MESSAGE_BYTES
            message = protocol.parse(text_data, limit, self.dialect)
            await self._dispatch(message)
        except CallbridgeError as error:
            await self._send(protocol.error(protocol.session_id_of(text_data), error))
        except Exception:
            reference = uuid.uuid4().hex[:12]
            logger.exception("signaling message failed (ref %s)", reference)
            failure = CallbridgeError(
                ErrorCode.HANDLER_ERROR, f"Internal error (reference {reference})"
            )
            await self._send(protocol.error(protocol.session_id_of(text_data), failure))

    async def _dispatch(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Register):
            await self._register(message)
        elif isinstance(message, protocol.Offer):
            await self._offer(message)
        elif isinstance(message, protocol.IceCandidate):
            await self._candidate(message)
        elif isinstance(message, protocol.Close):
            leg = await self._leg(message.session_id)
            if self.dialect.close_ends_call:
                principal = self._require_principal()
                await database_sync_to_async(calling.end_session)(principal, leg.call_id)
            else:
                await link.send(leg.worker, link.close_message(leg))
        elif isinstance(message, protocol.Hangup):
            await self._hangup(message)
        elif isinstance(message, protocol.CallbackRequest):
            await self._callback_request(message)
        elif isinstance(message, protocol.VoicemailStart):
            call_id = await self._call_of(message.session_id, message.call_sid)
            user_agent = self._header("user-agent")
            await database_sync_to_async(voicemail.start_message)(
                self._require_principal(),
                call_id,
                ip=_address(self.client_ip),
                user_agent=user_agent,
            )
        elif isinstance(message, protocol.VoicemailStop):
            call_id = await self._call_of(message.session_id, message.call_sid)
            await database_sync_to_async(voicemail.stop_message)(self._require_principal(), call_id)

    # --- client messages -------------------------------------------------------------------
    async def _authenticate(self, token: str) -> Principal:
        principal = await database_sync_to_async(principal_for_token)(token)
        if self.principal is not None and principal != self.principal:
            raise CallbridgeError(
                ErrorCode.FORBIDDEN, "this socket is signed in as someone else; open another"
            )
        if self.principal is None:
            if limited := self.slots.take_credential(principal.pk):
                raise limited
            self.principal = principal
            # principal_for_token just read it: alive, until the session's expiry if any.
            until = principal.session.expires_at if principal.session is not None else None
            standing = revocation.Standing(until=until)
            await self.watch_credential(revocation.principal_groups(principal), standing)
        return principal

    async def current_standing(self) -> revocation.Standing:
        if self.principal is None:
            return revocation.Standing("Auth token required")
        return await database_sync_to_async(revocation.principal_standing)(self.principal)

    async def leave_groups(self) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.clear()
        await super().leave_groups()

    def _require_principal(self) -> Principal:
        if self.principal is None:
            raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Auth token required")
        return self.principal

    async def _register(self, message: protocol.Register) -> None:
        principal = await self._authenticate(message.auth_token)
        if not self.registered:
            if principal.session is not None:
                await self._join(session_group(principal.session.pk))
            else:
                await self._join(OPERATORS_GROUP)
            await database_sync_to_async(_register_socket)(principal)
            self.registered = True
        calls = await database_sync_to_async(calling.open_calls)(principal)
        resumable = []
        for call, legs in calls:
            mine = next((leg for leg in legs if principal.owns(leg)), None)
            if mine is not None:
                self.legs[str(mine.pk)] = LegRef(call.pk, mine.pk, mine.role, call.media_worker)
                await self._join(call_group(call.pk))
            resumable.append(
                payloads.ResumableCall(
                    call_id=str(call.pk),
                    state=call.state,
                    mode=call.mode,
                    direction=call.direction,
                    leg_id=str(mine.pk) if mine else "",
                    media_state=mine.media_state if mine else None,
                    held=call.is_held,
                    supervisor_mode=_supervisor_mode(principal, legs),
                )
            )
        await self._send(payloads.registered(principal.role, resumable))
        if principal.session is not None:
            # A caller waiting in a queue hears its place again (missed while away).
            ringing = [call for call, _ in calls if call.state == CallState.RINGING]
            for place in await database_sync_to_async(waiting.places_of)(ringing):
                await self.queue_waiting(place)
            theirs = [call for call, _ in calls]
            for call_id, stage in await database_sync_to_async(voicemail.choices_of)(theirs):
                await self._send(payloads.voicemail_stage_event(call_id, stage))

    async def _offer(self, message: protocol.Offer) -> None:
        principal = await self._authenticate(message.auth_token)
        if message.details is not None:
            plan = await database_sync_to_async(calling.plan_gateway_offer)(
                principal, message.mode, message.details
            )
        else:
            plan = await database_sync_to_async(calling.plan_offer)(
                principal, message.call_sid, message.mode, message.queue
            )
        request_id = uuid.uuid4().hex
        self.offers[request_id] = plan
        # Join before the offer is recorded: its events then reach us after our answer.
        await self._join(call_group(plan.call_id))
        await link.send(
            plan.worker,
            link.offer_message(
                plan, message.sdp, reply_to=self.channel_name, request_id=request_id
            ),
        )

    async def _candidate(self, message: protocol.IceCandidate) -> None:
        leg = await self._leg(message.session_id)
        candidate = link.candidate_message(
            leg,
            message.candidate,
            message.sdp_mid,
            message.sdp_mline_index,
            reply_to=self.channel_name,  # only a candidate the worker cannot use is answered
        )
        await link.send(leg.worker, candidate)

    async def _hangup(self, message: protocol.Hangup) -> None:
        principal = self._require_principal()
        call_id = await self._call_of(message.session_id, message.call_sid)
        await database_sync_to_async(calling.hang_up)(principal, call_id)

    async def _callback_request(self, message: protocol.CallbackRequest) -> None:
        """The caller's `callback.request`: its call ends `callback_requested`; the
        sockets of its session hear `call.ended` and `callback.requested`."""
        if message.auth_token is not None:
            principal = await self._authenticate(message.auth_token)
        else:
            principal = self._require_principal()
        call_id = message.call_sid
        if message.session_id is not None:
            call_id = str((await self._leg(message.session_id)).call_id)
        await database_sync_to_async(callbacks.request_callback)(principal, call_id, message.note)

    async def _call_of(self, session_id: str | None, call_sid: str | None) -> str:
        """The call a message names: by your leg (sessionId), else by its callSid."""
        self._require_principal()
        if session_id is not None:
            return str((await self._leg(session_id)).call_id)
        return call_sid or ""

    def _header(self, name: str) -> str:
        for key, value in self.scope.get("headers", []):
            if key.decode("latin-1").lower() == name:
                return str(value.decode("latin-1"))
        return ""

    async def _leg(self, leg_id: str) -> LegRef:
        principal = self._require_principal()
        if leg_id not in self.legs:
            self.legs[leg_id] = await database_sync_to_async(calling.leg_for)(principal, leg_id)
        return self.legs[leg_id]

    # --- media worker replies ----------------------------------------------------------------
    # Channels calls these by the reply's type (media.answer, media.error); both read it
    # whole, so a reply of another protocol version is an error whatever its type.
    async def media_answer(self, message: dict[str, Any]) -> None:
        await self._media_reply(link.read_reply(message))

    async def media_error(self, message: dict[str, Any]) -> None:
        await self._media_reply(link.read_reply(message))

    async def _media_reply(self, reply: worker_protocol.Reply) -> None:
        if isinstance(reply, worker_protocol.Answer):
            await self._media_answered(reply)
        elif isinstance(reply, worker_protocol.Error):
            await self._media_refused(reply)
        else:
            logger.error("unexpected %s from a media worker on a signaling socket", reply.TYPE)

    async def _media_answered(self, reply: worker_protocol.Answer) -> None:
        plan = self.offers.pop(reply.request_id or "", None)
        if plan is None or self.principal is None:
            return
        if self.credential_dead:  # died while the worker answered: no leg for it
            await link.send(plan.worker, link.abandon_message(plan))
            return
        try:
            await database_sync_to_async(calling.commit_offer)(self.principal, plan)
        except CallbridgeError as error:
            await link.send(plan.worker, link.abandon_message(plan))
            await self._leave_unless_mine(plan)
            await self._send(protocol.error("", error, call_sid=str(plan.call_id)))
            return
        self.legs[str(plan.leg_id)] = LegRef(plan.call_id, plan.leg_id, plan.role, plan.worker)
        await self._send(protocol.answer(str(plan.leg_id), str(plan.call_id), reply.sdp))

    async def _media_refused(self, reply: worker_protocol.Error) -> None:
        error = reply.as_exception()
        plan = self.offers.pop(reply.request_id or "", None)
        if plan is not None:
            await self._leave_unless_mine(plan)
            session_id = str(plan.leg_id) if plan.kind == worker_protocol.OfferKind.ATTACH else ""
            await self._send(protocol.error(session_id, error, call_sid=str(plan.call_id)))
        else:  # a candidate the worker could not use
            await self._send(protocol.error(reply.leg or "", error))

    async def _leave_unless_mine(self, plan: OfferPlan) -> None:
        if not any(leg.call_id == plan.call_id for leg in self.legs.values()):
            await self.channel_layer.group_discard(call_group(plan.call_id), self.channel_name)
            self.groups_joined.discard(call_group(plan.call_id))

    # --- call events -----------------------------------------------------------------------
    async def call_event(self, message: dict[str, Any]) -> None:
        if message["event_id"] in self.seen_events or self.principal is None:
            return  # the same event can reach us through two groups
        if not self.credential_usable_now():
            return
        self.seen_events.append(message["event_id"])
        event = payloads.call_event_from_message(message)
        mine = next(
            (leg_id for leg_id, leg in self.legs.items() if str(leg.call_id) == event.call.call_id),
            "",
        )
        if failure := payloads.leg_failure(event, mine):
            await self._send(failure)
        if self.dialect.no_operator_error is not None and (
            refused := payloads.no_operator(event, mine, self.dialect.no_operator_error)
        ):
            await self._send(refused)
        if shaped := payloads.party_event(event, self.principal.role, mine):
            await self._send(shaped)

    async def queue_waiting(self, message: dict[str, Any]) -> None:
        """The caller's place in a queue's line (calls.routing.waiting; session group)."""
        if self.principal is None or not self.credential_usable_now():
            return
        mine = next(
            (leg_id for leg_id, leg in self.legs.items() if str(leg.call_id) == message["call_id"]),
            "",
        )
        await self._send(payloads.queue_waiting_event(message, mine))

    async def presence_event(self, message: dict[str, Any]) -> None:
        principal = self.principal
        if principal is not None and principal.is_operator and self.credential_usable_now():
            session = payloads.session_from_message(message["session"])
            await self._send(payloads.presence_event(session))

    async def operator_status(self, message: dict[str, Any]) -> None:
        """Operators' statuses are the staff dashboard's (/ws/operator), not the party
        view's: an API token's socket in the `operators` group is not told."""

    # --- plumbing --------------------------------------------------------------------------
    async def _join(self, group: str) -> None:
        if self.credential_dead:
            return
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))


def _supervisor_mode(principal: Principal, legs: list[Leg]) -> str | None:
    """The call's supervisor mode as `register` tells it (an end user: only if told)."""
    if principal.role == "user" and not settings.CALLBRIDGE_TELL_USER_SUPERVISOR:
        return None
    leg = next((leg for leg in legs if leg.role == "supervisor" and leg.left_at is None), None)
    return leg.supervisor_mode if leg is not None else None
