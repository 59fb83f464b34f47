"""The contract's error vocabulary, shared by REST and WebSocket. No Django here."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    CALL_STATE = "CALL_STATE"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    RATE_LIMITED = "RATE_LIMITED"
    MEDIA_BRIDGE_FAILURE = "MEDIA_BRIDGE_FAILURE"
    AGENT_FAILURE = "AGENT_FAILURE"  # PolyAI's: nobody (no operator) took the call
    HANDLER_ERROR = "HANDLER_ERROR"

    @property
    def http_status(self) -> int:
        return _PROPERTIES[self][0]

    @property
    def recoverable(self) -> bool:
        """Default: can the client retry or carry on (same connection, other input)?"""
        return _PROPERTIES[self][1]


_PROPERTIES: dict[ErrorCode, tuple[int, bool]] = {
    ErrorCode.UNAUTHORIZED: (401, False),
    ErrorCode.FORBIDDEN: (403, False),
    ErrorCode.INVALID_MESSAGE: (400, True),
    ErrorCode.INVALID_ARGUMENT: (400, True),
    ErrorCode.NOT_FOUND: (404, False),
    ErrorCode.CALL_STATE: (409, False),
    ErrorCode.CONSENT_REQUIRED: (409, True),
    ErrorCode.RATE_LIMITED: (429, True),
    ErrorCode.MEDIA_BRIDGE_FAILURE: (502, True),
    ErrorCode.AGENT_FAILURE: (503, True),
    ErrorCode.HANDLER_ERROR: (500, True),
}


class CallbridgeError(Exception):
    """An error the client is told about, with one of the contract's codes."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        recoverable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = code.recoverable if recoverable is None else recoverable
        self.details = details or {}

    def as_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.recoverable, self.details)


def error_body(
    code: ErrorCode,
    message: str,
    recoverable: bool | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code.value,
        "message": message,
        "recoverable": code.recoverable if recoverable is None else recoverable,
    }
    if details:
        body["details"] = details
    return body


class CallStateError(CallbridgeError):
    """The call's state does not allow the requested transition."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.CALL_STATE, message)
