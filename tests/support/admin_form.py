"""Logging in through the admin's own form over real HTTP, as a browser does."""

from __future__ import annotations

import re
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from tests.support.live_server import Server


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def http_from(address: str = "127.0.0.1") -> requests.Session:
    """A client whose connections come from `address` (any 127.x on loopback)."""
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def admin_login(
    server: Server,
    username: str,
    password: str,
    headers: dict[str, str] | None = None,
    client: requests.Session | None = None,
) -> requests.Response:
    """POST the admin login form (with its CSRF token); 302 = logged in, 200 = refused
    with the form again, 429 = locked out."""
    client = client or requests.Session()
    form = client.get(f"{server.url}/admin/login/", headers=headers, timeout=10)
    hidden = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert hidden, form.text[:500]
    client.cookies.clear()  # the cookie goes explicitly (the jar ignores IP-address hosts)
    return client.post(
        f"{server.url}/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": hidden.group(1)},
        headers={**(headers or {}), "Cookie": f"csrftoken={form.cookies['csrftoken']}"},
        allow_redirects=False,
        timeout=10,
    )


def demo_operator_password(server: Server) -> str:
    printed = server.manage("demo_operator")
    password = re.search(r"password\s+(\S+)", printed)
    assert password, printed
    return password.group(1)
