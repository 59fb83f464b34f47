"""The ASP.NET Core SignalR JSON hub protocol, server side, as `@microsoft/signalr` speaks it.

Pure: no Django, no Channels. Only what a hub over WebSocket needs: the handshake, records
ended by the record separator (0x1E), invocations (with or without an id, so with or
without a completion), pings and close messages. Streaming, client results and stateful
reconnect (types 2, 4, 5, 8, 9) are not offered: a streaming call is answered with a
completion error, the rest are ignored as the spec allows for types a party does not use.
Spec: dotnet/aspnetcore src/SignalR/docs/specs/HubProtocol.md and TransportProtocols.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RECORD_SEPARATOR = "\x1e"
PROTOCOL = "json"
VERSION = 1

INVOCATION = 1
STREAM_ITEM = 2
COMPLETION = 3
STREAM_INVOCATION = 4
CANCEL_INVOCATION = 5
PING = 6
CLOSE = 7

# What the official clients expect (their defaults): the server sends something at least
# every 15 s (a client gives up after 30 s of silence), and hears from them as often.
KEEPALIVE_INTERVAL_S = 15.0
CLIENT_TIMEOUT_S = 30.0


class HubProtocolError(Exception):
    """The peer broke the protocol: the connection ends with a close message saying so."""


@dataclass(frozen=True)
class Invocation:
    target: str
    arguments: tuple[Any, ...]
    invocation_id: str | None  # None: the caller wants no completion


@dataclass(frozen=True)
class StreamInvocation:
    invocation_id: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Close:
    error: str | None


@dataclass(frozen=True)
class Ignored:
    """A message type this server does not use (completions, stream items, acks, …)."""

    type: int


Message = Invocation | StreamInvocation | Ping | Close | Ignored


class RecordReader:
    """Splits incoming text into complete records. A WebSocket frame may hold several
    records; a record split across frames is not something WebSocket clients do, but a
    partial tail is kept (up to `max_chars`) rather than misread."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._partial = ""

    def feed(self, text: str) -> list[str]:
        pending = self._partial + text
        *records, self._partial = pending.split(RECORD_SEPARATOR)
        if len(self._partial) > self.max_chars or any(len(r) > self.max_chars for r in records):
            raise HubProtocolError(f"message too large (limit {self.max_chars} characters)")
        return records


def _load_object(record: str) -> dict[str, Any]:
    try:
        value = json.loads(record)
    except (ValueError, RecursionError):
        raise HubProtocolError("message is not JSON") from None
    if not isinstance(value, dict):
        raise HubProtocolError("message must be a JSON object")
    return value


def parse_handshake(record: str) -> None:
    """The client's handshake request; HubProtocolError (its text goes back in the
    handshake response) unless it asks for JSON version 1."""
    request = _load_object(record)
    protocol, version = request.get("protocol"), request.get("version")
    if not isinstance(protocol, str):
        raise HubProtocolError("handshake: protocol is required")
    if protocol != PROTOCOL:
        raise HubProtocolError(f"The protocol '{protocol[:40]}' is not supported.")
    if isinstance(version, bool) or not isinstance(version, int):
        raise HubProtocolError("handshake: version is required")
    if version != VERSION:
        raise HubProtocolError(f"The server does not support version {version} of the protocol.")


def parse(record: str) -> Message:
    """One hub message after the handshake."""
    message = _load_object(record)
    kind = message.get("type")
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise HubProtocolError("type is required")
    if kind == INVOCATION:
        return _invocation(message)
    if kind == STREAM_INVOCATION:
        return StreamInvocation(_invocation_id(message) or "")
    if kind == PING:
        return Ping()
    if kind == CLOSE:
        error = message.get("error")
        return Close(error if isinstance(error, str) else None)
    return Ignored(kind)


def _invocation_id(message: dict[str, Any]) -> str | None:
    value = message.get("invocationId")
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 100:
        raise HubProtocolError("invocationId must be a short string")
    return value


def _invocation(message: dict[str, Any]) -> Invocation:
    target = message.get("target")
    if not isinstance(target, str) or not target or len(target) > 100:
        raise HubProtocolError("target must be a short string")
    arguments = message.get("arguments", [])
    if not isinstance(arguments, list):
        raise HubProtocolError("arguments must be an array")
    invocation_id = _invocation_id(message)
    if message.get("streamIds"):
        # Streams as arguments are not offered: reported on the invocation, not fatal.
        return Invocation(target, (StreamArgument(),), invocation_id)
    return Invocation(target, tuple(arguments), invocation_id)


@dataclass(frozen=True)
class StreamArgument:
    """Marks an invocation that passed client-to-server streams (not supported)."""


# --- server → client ---------------------------------------------------------------------
def _record(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + RECORD_SEPARATOR


def handshake_response(error: str | None = None) -> str:
    return _record({"error": error} if error else {})


def invocation(target: str, *arguments: Any) -> str:
    """A server-to-client call (a client `on` handler): no id, no completion expected."""
    return _record({"type": INVOCATION, "target": target, "arguments": list(arguments)})


def completion(invocation_id: str, *, error: str | None = None, result: Any = None) -> str:
    message: dict[str, Any] = {"type": COMPLETION, "invocationId": invocation_id}
    if error is not None:
        message["error"] = error
    elif result is not None:
        message["result"] = result
    return _record(message)


def ping() -> str:
    return _record({"type": PING})


def close(error: str | None = None, *, allow_reconnect: bool = False) -> str:
    message: dict[str, Any] = {"type": CLOSE}
    if error:
        message["error"] = error
    if allow_reconnect:
        message["allowReconnect"] = True
    return _record(message)
