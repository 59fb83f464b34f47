"""/hubs/webrtc: Voisnap's WebRtcHub, a translator in front of /ws/signal's consumer.

The SignalR framing is calls.signaling.signalr's; everything a call needs (signing in,
caps, revocation, offers to the media worker, candidates, events) is SignalConsumer's,
reached with /ws/signal's own messages. Outgoing, /ws/signal's messages become hub
events: `answer` → `SdpAnswerReceived`, `call.answered` (an echo call: its answer) →
`SessionStarted`, `call.ended` → `SessionEnded`, `error` → `Error` (or the failed
invocation's completion); the rest (`registered`, `call.ringing`, media and queue events)
have no Voisnap counterpart and are not sent.

Differences from /ws/signal: the credential comes with the connection (`?sessionToken=`)
and the session's agent picks the call (calls.calling.agent_target); ICE candidates that
arrive before the answer are held and sent on after it (the browser trickles them while
the offer is still on its way); `EndSessionAsync(reason)` hangs up with the reason kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from calls import calling
from calls.authn import hub_connection_token_matches, principal_for_hub
from calls.consumers import throttle
from calls.consumers.signal import SignalConsumer
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import CallMode
from calls.signaling import protocol, signalr
from calls.workers import protocol as worker_protocol

logger = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 4400
MAX_HELD_CANDIDATES = 64
_REASON = re.compile(r"^[\w.:\- ]{1,64}$")


def _query_value(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def error_text(error: CallbridgeError) -> str:
    return f"{error.code.value}: {error.message}"


class WebRtcHubConsumer(SignalConsumer):
    keepalive_interval_s = signalr.KEEPALIVE_INTERVAL_S
    client_timeout_s = signalr.CLIENT_TIMEOUT_S

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        self.session_token = _query_value(query, "sessionToken")
        self.access_token = _query_value(query, "access_token")
        self.connection_token = _query_value(query, "id")
        self.reader = signalr.RecordReader(settings.CALLBRIDGE_WS_MAX_MESSAGE_BYTES)
        self.handshaken = False
        self.closing = False
        self.close_error: str | None = None
        self.held_candidates: list[protocol.IceCandidate] = []
        self.end_requested: str | None = None  # EndSessionAsync's reason, before the call
        self.keepalive: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.last_sent = self.last_heard = loop.time()
        await super().connect()

    async def disconnect(self, code: int) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
        await super().disconnect(code)

    # --- incoming frames -------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        self.last_heard = asyncio.get_running_loop().time()
        if text_data is None:
            await self._fail("this hub speaks the JSON protocol: send text frames")
            return
        try:
            records = self.reader.feed(text_data)
        except signalr.HubProtocolError as error:
            await self._fail(str(error))
            return
        for record in records:
            if self.closing:
                return
            if not self.handshaken:
                await self._handshake(record)
                continue
            try:
                message = signalr.parse(record)
            except signalr.HubProtocolError as error:
                await self._fail(str(error))
                return
            await self._hub_message(message)

    async def _handshake(self, record: str) -> None:
        try:
            signalr.parse_handshake(record)
        except signalr.HubProtocolError as error:
            self.closing = True
            await self._write(signalr.handshake_response(str(error)), force=True)
            await super().close(code=CLOSE_PROTOCOL_ERROR)
            return
        self.handshaken = True
        await self._write(signalr.handshake_response())
        try:
            principal = await database_sync_to_async(principal_for_hub)(
                self.session_token, self.access_token
            )
            if self.connection_token and not hub_connection_token_matches(
                self.connection_token, principal
            ):
                raise CallbridgeError(
                    ErrorCode.UNAUTHORIZED, "unknown connection id: negotiate again"
                )
            await self._register(protocol.Register(self.session_token or self.access_token or ""))
        except CallbridgeError as error:
            await self._fail(error_text(error), code=throttle.CLOSE_UNAUTHORIZED)
            return
        self.keepalive = asyncio.create_task(self._keep_alive())

    async def _hub_message(self, message: signalr.Message) -> None:
        if isinstance(message, signalr.Close):
            self.closing = True
            await super().close()
        elif isinstance(message, signalr.StreamInvocation):
            await self._complete(message.invocation_id, "Streaming is not supported.")
        elif isinstance(message, signalr.Invocation):
            await self._invoke(message)
        # Pings only keep the connection alive (last_heard); other types are not used.

    async def _invoke(self, invocation: signalr.Invocation) -> None:
        principal_id = self.principal.pk if self.principal is not None else None
        if limited := throttle.check_message(self.client_ip, self.channel_name, principal_id):
            await self._complete_with_error(invocation.invocation_id, limited)
            return
        if self.principal is not None and not await self.credential_alive():
            return
        method = self.METHODS.get(invocation.target)
        if method is None:
            await self._complete(
                invocation.invocation_id, f"Unknown hub method '{invocation.target[:40]}'"
            )
            return
        if len(invocation.arguments) != 1 or isinstance(
            invocation.arguments[0], signalr.StreamArgument
        ):
            await self._complete(
                invocation.invocation_id,
                f"Invocation provides {len(invocation.arguments)} argument(s) but target"
                " expects 1.",
            )
            return
        try:
            await method(self, invocation.arguments[0])
        except CallbridgeError as error:
            await self._complete_with_error(invocation.invocation_id, error)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            logger.exception("hub invocation %s failed (ref %s)", invocation.target, reference)
            failure = CallbridgeError(
                ErrorCode.HANDLER_ERROR, f"Internal error (reference {reference})"
            )
            await self._complete_with_error(invocation.invocation_id, failure)
        else:
            await self._complete(invocation.invocation_id)

    async def _complete_with_error(self, invocation_id: str | None, error: CallbridgeError) -> None:
        if invocation_id is None:  # a `send`: nobody waits for a completion, so say it here
            await self._hub_event("Error", self._error_event(error.as_body()))
        else:
            await self._complete(invocation_id, error_text(error))

    async def _complete(self, invocation_id: str | None, error: str | None = None) -> None:
        if invocation_id is not None:
            await self._write(signalr.completion(invocation_id, error=error))

    # --- hub methods -----------------------------------------------------------------------
    def _current_leg(self) -> str | None:
        return next(iter(self.legs), None)

    async def send_offer(self, offer: Any) -> None:
        principal = self._require_principal()
        if not isinstance(offer, dict):
            raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "the offer must be {sdp, type}")
        leg = self._current_leg()
        mode, queue = calling.agent_target(principal.session.agent if principal.session else "")
        # Every offer re-reads the credential (SignalConsumer._authenticate), as on /ws/signal.
        token = self.session_token or self.access_token
        envelope: dict[str, Any] = {"type": "offer", "authToken": token, "data": offer}
        if leg is not None:  # a new offer for the call this session is in (ICE restart)
            envelope["callSid"] = str(self.legs[leg].call_id)
        else:
            envelope.update(mode=mode, queue=queue)
        message = protocol.parse_envelope(envelope)
        assert isinstance(message, protocol.Offer)
        await self._offer(message)

    async def send_ice_candidate(self, candidate: Any) -> None:
        self._require_principal()
        leg = self._current_leg()
        envelope = {"type": "ice-candidate", "sessionId": leg or "-", "data": candidate}
        message = protocol.parse_envelope(envelope)
        assert isinstance(message, protocol.IceCandidate)
        if leg is not None and not self.offers:
            await self._candidate(message)
        elif len(self.held_candidates) < MAX_HELD_CANDIDATES:
            self.held_candidates.append(message)  # sent on once the offer is answered
        else:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, "too many ICE candidates before the answer"
            )

    async def end_session(self, reason: Any) -> None:
        self._require_principal()
        if reason is not None and (not isinstance(reason, str) or not _REASON.match(reason)):
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, "reason: up to 64 letters, digits, _ . : - or spaces"
            )
        leg = self._current_leg()
        if leg is None:
            if self.offers:  # the call exists once the media server answers: end it then
                self.end_requested = reason or ""
            return  # else no call (yet, or any more): nothing to end
        await self._hang_up(str(self.legs[leg].call_id), reason or "")

    async def _hang_up(self, call_id: str, reason: str) -> None:
        principal = self._require_principal()
        with contextlib.suppress(CallStateError):  # ended meanwhile: ended all the same
            await database_sync_to_async(calling.hang_up)(principal, call_id, reason)

    METHODS = {
        "SendOfferAsync": send_offer,
        "SendIceCandidateAsync": send_ice_candidate,
        "EndSessionAsync": end_session,
    }

    async def _media_answered(self, reply: worker_protocol.Answer) -> None:
        plan = self.offers.get(reply.request_id or "")
        await super()._media_answered(reply)
        leg = str(plan.leg_id) if plan is not None else ""
        held, self.held_candidates = self.held_candidates, []
        if plan is None or leg not in self.legs:
            return  # refused: SignalConsumer told the client
        if self.end_requested is not None:  # EndSessionAsync while the offer was on its way
            reason, self.end_requested = self.end_requested, None
            await self._hang_up(str(plan.call_id), reason)
            return
        if plan.creates_call and plan.mode == CallMode.ECHO:  # the echo agent is there at once
            await self._hub_event("SessionStarted", {"conversationId": str(plan.call_id)})
        for candidate in held:
            await self._candidate(
                protocol.IceCandidate(
                    leg, candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
                )
            )

    async def _media_refused(self, reply: worker_protocol.Error) -> None:
        if (reply.request_id or "") in self.offers:  # that offer's candidates go nowhere now
            self.held_candidates.clear()
            self.end_requested = None
        await super()._media_refused(reply)

    # --- outgoing: /ws/signal's messages as hub events ---------------------------------------
    # types-channels types send() as AsyncConsumer's; Channels' websocket consumer's it is.
    async def send(  # type: ignore[override]
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Everything SignalConsumer and CredentialWatch say comes through here."""
        if text_data is not None:
            for record in self._translate(json.loads(text_data)):
                await self._write(record)
        if close:
            await self.close()

    def _translate(self, message: dict[str, Any]) -> list[str]:
        kind, data = message.get("type"), message.get("data") or {}
        if kind == "answer":
            return [signalr.invocation("SdpAnswerReceived", data)]
        if kind == "error":
            if not data.get("recoverable", True):
                self.close_error = f"{data.get('code')}: {data.get('message')}"
            return [signalr.invocation("Error", self._error_event(data))]
        if kind != "event":
            return []
        call_id = str(message.get("callSid", ""))
        if data.get("name") == "call.answered":
            return [signalr.invocation("SessionStarted", {"conversationId": call_id})]
        if data.get("name") == "call.ended":
            # Its leg is done: the session's next offer starts a new call.
            for leg_id in [k for k, leg in self.legs.items() if str(leg.call_id) == call_id]:
                del self.legs[leg_id]
            reason = data.get("clientReason") or data.get("reason")
            return [signalr.invocation("SessionEnded", {"reason": reason})]
        return []

    @staticmethod
    def _error_event(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "message": body.get("message", ""),
            "recoverable": bool(body.get("recoverable", False)),
            "code": body.get("code"),
        }

    async def _hub_event(self, target: str, argument: dict[str, Any]) -> None:
        await self._write(signalr.invocation(target, argument))

    async def _write(self, record: str, force: bool = False) -> None:
        if (self.handshaken and not self.closing) or force:
            self.last_sent = asyncio.get_running_loop().time()
            await super().send(text_data=record)

    # --- closing ---------------------------------------------------------------------------
    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Any close (credential died, sign-in deadline, caps) says why in a close message."""
        if not self.closing:
            await self._write(signalr.close(self.close_error))
            self.closing = True
        await super().close(code=code, reason=reason)

    async def _fail(self, error: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        self.close_error = error
        await self.close(code=code)

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(self.keepalive_interval_s, self.client_timeout_s) / 3
        while not self.closing:
            await asyncio.sleep(tick)
            now = loop.time()
            if now - self.last_heard > self.client_timeout_s:
                await self._fail("the client sent nothing (not even a ping) for too long")
                return
            if now - self.last_sent >= self.keepalive_interval_s:
                await self._write(signalr.ping())
