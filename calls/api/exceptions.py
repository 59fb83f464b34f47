"""DRF exceptions carrying the contract's error codes."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException

from calls.errors import CallbridgeError, ErrorCode


class ApiError(APIException):
    def __init__(
        self, code: ErrorCode, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        self.error = CallbridgeError(code, message, details=details)
        self.status_code = code.http_status
        super().__init__(detail=message, code=code.value)
