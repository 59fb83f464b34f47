"""How the generator signals each server under test: set up calls, offer legs, probe WS.

`CallbridgeTarget` uses callbridge's public REST API (docs/api.md): an end-user session per
call, the user places a bridge call, the API token answers it as the operator, each leg
sends its offer to `POST /api/calls/{id}/webrtc/offer`. Its WebSocket probe is a
`register` → `registered` round trip on /ws/signal with an idle end-user session.
`StockTarget` drives bench/stock_relay.py over one WebSocket per request.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets

HTTP_TIMEOUT_S = 60


@dataclass
class CallHandle:
    call_id: str
    tokens: dict[str, str] = field(default_factory=dict)  # role -> credential
    legs: dict[str, str] = field(default_factory=dict)  # role -> the server's leg id


class StaffSession:
    """A logged-in staff member's REST calls: its session cookie and a CSRF token, as the
    dashboard sends them. Supervisor modes are for staff sessions only, never for API
    tokens (calls/supervision.py); bench.media makes the session in the database."""

    def __init__(self, base_url: str, session_key: str) -> None:
        self.base_url = base_url
        self.csrf = secrets.token_hex(16)  # a 32-character secret, in cookie and header
        self.cookie = f"sessionid={session_key}; csrftoken={self.csrf}"

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our own http:// base URL)
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Cookie": self.cookie,
                "X-CSRFToken": self.csrf,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"POST {path}: {error.code} {error.read()[:300]!r}") from None


class Target(Protocol):
    async def create_call(self, index: int) -> CallHandle: ...
    async def answer(self, call: CallHandle) -> None: ...
    async def offer(self, call: CallHandle, role: str, sdp: str) -> str: ...
    async def record(self, call: CallHandle) -> None: ...
    async def stop_recording(self, call: CallHandle) -> None: ...
    async def hang_up(self, call: CallHandle) -> None: ...
    async def supervise(self, call: CallHandle, mode: str) -> None: ...
    async def offer_as_supervisor(self, call: CallHandle, sdp: str) -> str: ...
    async def ws_round_trip(self) -> float: ...
    async def watch_feed(self, records: dict[str, Counter[str]]) -> None: ...
    async def leg_states(self) -> dict[str, int] | None: ...
    async def close(self) -> None: ...


class CallbridgeTarget:
    def __init__(self, base_url: str, api_token: str, supervisor_session: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.api_token = api_token
        # A supervisor's session key (supervise()); none: the step cannot run.
        self._supervisor = StaffSession(self.base_url, supervisor_session)
        self._has_supervisor = bool(supervisor_session)
        # urllib is blocking: a thread per request in flight, as many as a burst of set-ups
        # sends at once (a smaller pool queued requests here, in the generator, and the
        # set-up profile counted that wait as the network's).
        self._pool = ThreadPoolExecutor(max_workers=512, thread_name_prefix="rest")
        self._ws: Any = None
        self._probe_token: str | None = None

    def _post_blocking(self, path: str, token: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our own http:// base URL)
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"POST {path}: {error.code} {error.read()[:300]!r}") from None

    async def _post(self, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._post_blocking, path, token, body or {})

    def _get_blocking(self, path: str) -> tuple[Any, str]:
        request = urllib.request.Request(  # noqa: S310 (our own http:// base URL)
            self.base_url + path, headers={"Authorization": f"Bearer {self.api_token}"}
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
            return json.loads(response.read()), response.headers.get("Link", "")

    async def leg_states(self) -> dict[str, int] | None:
        """mediaState counts over the legs of every active call (GET /api/calls pages)."""
        loop = asyncio.get_running_loop()
        counts: Counter[str] = Counter()
        path: str | None = "/api/calls?state=active&limit=200"
        while path:
            calls, link = await loop.run_in_executor(self._pool, self._get_blocking, path)
            for call in calls:
                counts.update(leg["mediaState"] for leg in call["legs"])
            following = re.search(r'<([^>]+)>;\s*rel="next"', link)
            path = following.group(1).replace(self.base_url, "") if following else None
        return dict(counts)

    async def _session(self, name: str) -> str:
        session = await self._post("/api/sessions", self.api_token, {"displayName": name})
        return session["sessionToken"]

    async def create_call(self, index: int) -> CallHandle:
        user_token = await self._session(f"bench user {index}")
        call = await self._post("/api/calls", user_token, {"mode": "bridge"})
        return CallHandle(call["callID"], {"user": user_token, "operator": self.api_token})

    async def answer(self, call: CallHandle) -> None:
        await self._post(f"/api/calls/{call.call_id}/answer", self.api_token)

    async def offer(self, call: CallHandle, role: str, sdp: str) -> str:
        answer = await self._post(
            f"/api/calls/{call.call_id}/webrtc/offer",
            call.tokens[role],
            {"type": "offer", "sdp": sdp},
        )
        call.legs[role] = answer["sessionId"]  # calls.setup_trace follows legs by this id
        return answer["sdp"]

    async def record(self, call: CallHandle) -> None:
        # The bench's server runs with CALLBRIDGE_RECORDING_CONSENT=none: no consent needed.
        await self._post(f"/api/calls/{call.call_id}/record", self.api_token)

    async def stop_recording(self, call: CallHandle) -> None:
        # Answered once the WAV is written (the forwarding path renders it then).
        await self._post(f"/api/calls/{call.call_id}/record/stop", self.api_token)

    async def hang_up(self, call: CallHandle) -> None:
        await self._post(f"/api/calls/{call.call_id}/hangup", self.api_token)

    async def _as_supervisor(self, path: str, body: dict[str, Any]) -> Any:
        if not self._has_supervisor:
            raise RuntimeError("no supervisor session given (bench.media makes one)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._supervisor.post, path, body)

    async def supervise(self, call: CallHandle, mode: str) -> None:
        await self._as_supervisor(f"/api/calls/{call.call_id}/supervise", {"mode": mode})

    async def offer_as_supervisor(self, call: CallHandle, sdp: str) -> str:
        answer = await self._as_supervisor(
            f"/api/calls/{call.call_id}/webrtc/offer", {"type": "offer", "sdp": sdp}
        )
        return str(answer["sdp"])

    async def watch_feed(self, records: dict[str, Counter[str]]) -> None:
        """Read /ws/operator as a supervisor's dashboard does (its session cookie), adding
        each call event's record name to `records[callSid]`, until cancelled."""
        if not self._has_supervisor:
            raise RuntimeError("no supervisor session given (bench.media makes one)")
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws/operator"
        headers = {"Cookie": self._supervisor.cookie, "Origin": self.base_url}
        async with websockets.connect(ws_url, additional_headers=headers, max_size=2**24) as feed:
            async for raw in feed:
                message = json.loads(raw)
                if message.get("type") == "event" and message.get("callSid"):
                    record = message["data"].get("record") or message["data"].get("name")
                    records.setdefault(message["callSid"], Counter())[record] += 1

    async def ws_round_trip(self) -> float:
        if self._ws is None:
            self._probe_token = await self._session("bench signaling probe")
            ws_url = self.base_url.replace("http", "ws", 1) + "/ws/signal"
            self._ws = await websockets.connect(ws_url, max_size=2**20)
        started = time.perf_counter()
        await self._ws.send(json.dumps({"type": "register", "authToken": self._probe_token}))
        while True:
            message = json.loads(await self._ws.recv())
            if message.get("type") == "event" and message["data"].get("name") == "registered":
                return time.perf_counter() - started
            if message.get("type") == "error":
                raise RuntimeError(f"register failed: {message}")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class StockTarget:
    """bench/stock_relay.py: one request per WebSocket message, answered in order."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self._probe: Any = None

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        async with websockets.connect(self.ws_url, max_size=2**20) as ws:
            await ws.send(json.dumps(message))
            return json.loads(await ws.recv())

    async def create_call(self, index: int) -> CallHandle:
        return CallHandle(f"call-{index}")

    async def answer(self, call: CallHandle) -> None:
        return None

    async def offer(self, call: CallHandle, role: str, sdp: str) -> str:
        reply = await self._request(
            {"type": "offer", "call": call.call_id, "role": role, "sdp": sdp}
        )
        if reply.get("type") != "answer":
            raise RuntimeError(f"stock relay refused the offer: {reply}")
        return reply["sdp"]

    async def record(self, call: CallHandle) -> None:
        raise NotImplementedError("the stock relay does not record")

    async def stop_recording(self, call: CallHandle) -> None:
        raise NotImplementedError("the stock relay does not record")

    async def hang_up(self, call: CallHandle) -> None:
        await self._request({"type": "hangup", "call": call.call_id})

    async def supervise(self, call: CallHandle, mode: str) -> None:
        raise NotImplementedError("the stock relay has no supervisors")

    async def offer_as_supervisor(self, call: CallHandle, sdp: str) -> str:
        raise NotImplementedError("the stock relay has no supervisors")

    async def watch_feed(self, records: dict[str, Counter[str]]) -> None:
        raise NotImplementedError("the stock relay has no operator feed")

    async def ws_round_trip(self) -> float:
        if self._probe is None:
            self._probe = await websockets.connect(self.ws_url)
        started = time.perf_counter()
        await self._probe.send(json.dumps({"type": "ping"}))
        await self._probe.recv()
        return time.perf_counter() - started

    async def leg_states(self) -> dict[str, int] | None:
        return None

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.close()
