"""REST calls through Django's test client: a client bearing a token, and the error shape
every API error has."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient


def bearer_client(token: str, header: str = "authorization") -> APIClient:
    """A client sending `token` as `Authorization: Bearer …` (or WaGo's `token:` header)."""
    client = APIClient()
    if header == "authorization":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        client.credentials(HTTP_TOKEN=token)
    return client


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """`response` is the JSON error `code` with `status`, and leaks no traceback."""
    body = response.json()
    assert response.status_code == status, body
    assert body["code"] == code, body
    assert set(body) >= {"code", "message", "recoverable"}
    assert isinstance(body["recoverable"], bool)
    assert "Traceback" not in response.content.decode()
    return body


def streamed_body(response: Any) -> bytes:
    """The whole body of a response whose content is streamed asynchronously (the CDR
    export, ranged recording fetches), as a server would send it."""
    return b"".join(chunk for chunk in streamed_chunks(response))


def streamed_chunks(response: Any) -> list[bytes]:
    from asgiref.sync import async_to_sync

    async def read() -> list[bytes]:
        return [bytes(chunk) async for chunk in response.streaming_content]

    return async_to_sync(read)()
