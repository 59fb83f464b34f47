"""Every API failure as `{"code", "message", "recoverable"}` with the contract's codes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from calls.errors import CallbridgeError, ErrorCode, error_body

logger = logging.getLogger("calls.api")

_API_PREFIXES = ("/api/", "/call/", "/hubs/")


class AuthenticationRefused(drf.APIException):
    """A CallbridgeError raised by an authentication class. Only there must it be a DRF
    exception: DRF marks the request anonymous only for those, else its HTML renderer
    authenticates again while drawing the error page, raises again, and answers 500."""

    def __init__(self, error: CallbridgeError) -> None:
        self.error = error
        self.status_code = error.code.http_status
        super().__init__(detail=error.message, code=error.code.value)


def _response(error: CallbridgeError, headers: dict[str, str] | None = None) -> Response:
    return Response(error.as_body(), status=error.code.http_status, headers=headers)


def _validation_error(exc: drf.ValidationError) -> CallbridgeError:
    detail = exc.detail
    if isinstance(detail, dict):
        problems = {str(field): _first_message(value) for field, value in detail.items()}
        codes = exc.get_codes()
        flat_codes = _flatten_codes(codes)
        missing = "required" in flat_codes or "null" in flat_codes
        field, message = next(iter(problems.items()))
        text = message if field == "non_field_errors" else f"{field}: {message}"
        code = ErrorCode.INVALID_MESSAGE if missing else ErrorCode.INVALID_ARGUMENT
        return CallbridgeError(code, text, details={"fields": problems})
    return CallbridgeError(ErrorCode.INVALID_ARGUMENT, _first_message(detail))


def _first_message(value: Any) -> str:
    while isinstance(value, list | dict) and value:
        value = value[0] if isinstance(value, list) else next(iter(value.values()))
    return str(value)


def _flatten_codes(codes: Any) -> set[str]:
    if isinstance(codes, dict):
        return set().union(*(_flatten_codes(v) for v in codes.values())) if codes else set()
    if isinstance(codes, list):
        return set().union(*(_flatten_codes(v) for v in codes)) if codes else set()
    return {str(codes)}


def as_callbridge_error(exc: Exception) -> CallbridgeError | None:
    """Translate a known exception; None for anything unexpected."""
    if isinstance(exc, AuthenticationRefused):
        return exc.error
    if isinstance(exc, CallbridgeError):
        return exc
    if isinstance(exc, drf.NotAuthenticated):
        return CallbridgeError(ErrorCode.UNAUTHORIZED, "Auth token required")
    if isinstance(exc, drf.AuthenticationFailed):
        return CallbridgeError(ErrorCode.UNAUTHORIZED, str(exc.detail))
    if isinstance(exc, drf.PermissionDenied | PermissionDenied):
        return CallbridgeError(ErrorCode.FORBIDDEN, "You are not allowed to do that")
    if isinstance(exc, drf.NotFound | Http404):
        return CallbridgeError(ErrorCode.NOT_FOUND, "Not found")
    if isinstance(exc, drf.Throttled):
        wait = _retry_after(exc)
        return CallbridgeError(
            ErrorCode.RATE_LIMITED,
            "Too many requests",
            details={"retryAfter": wait} if wait is not None else None,
        )
    if isinstance(exc, drf.ValidationError):
        return _validation_error(exc)
    if isinstance(exc, drf.ParseError | drf.UnsupportedMediaType | RequestDataTooBig):
        return CallbridgeError(ErrorCode.INVALID_MESSAGE, _parse_message(exc))
    if isinstance(exc, drf.MethodNotAllowed):
        return CallbridgeError(ErrorCode.INVALID_MESSAGE, str(exc.detail))
    return None


def _retry_after(exc: drf.Throttled) -> int | None:
    # Throttled.__init__ sets `wait` (whole seconds); djangorestframework-stubs omit it.
    wait: int | None = exc.wait  # type: ignore[attr-defined]
    return wait


def _parse_message(exc: Exception) -> str:
    if isinstance(exc, RequestDataTooBig):
        return "Request body too large"
    if isinstance(exc, drf.UnsupportedMediaType):
        return "Send JSON (Content-Type: application/json)"
    return "Request body is not valid JSON"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    error = as_callbridge_error(exc)
    if error is None:
        reference = uuid.uuid4().hex[:12]
        logger.error("unhandled API error (ref %s)", reference, exc_info=exc)
        error = CallbridgeError(ErrorCode.HANDLER_ERROR, f"Internal error (reference {reference})")
    headers = {}
    if isinstance(exc, drf.Throttled) and (wait := _retry_after(exc)) is not None:
        headers["Retry-After"] = str(int(wait) + 1)
    if error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
    response = _response(error, headers)
    if isinstance(exc, drf.MethodNotAllowed):
        response.status_code = exc.status_code  # 405 keeps its HTTP meaning
    return response


def _is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIXES)


def not_found_view(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api_path(request):
        return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Not found"), status=404)
    return defaults.page_not_found(request, exception)


def server_error_view(request: HttpRequest) -> HttpResponse:
    if _is_api_path(request):
        body = error_body(ErrorCode.HANDLER_ERROR, "Internal error")
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
