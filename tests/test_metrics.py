"""`/metrics`: who may scrape, what a real call moves, several processes summed."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from calls.media.worker import PACKET_COUNT_INTERVAL_S
from tests.support.live_call import end_live_call, start_live_call
from tests.support.live_server import running_server

TOKEN = "metrics-token-0123456789abcdef"
DASHBOARD = Path(__file__).resolve().parent.parent / "docs/grafana-dashboard.json"
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def values_of(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: number for (each, labels), number in samples.items() if each == name}


@pytest.mark.django_db
def test_it_refuses_scrapers_without_the_token_or_an_allowed_address(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()  # REMOTE_ADDR 127.0.0.1
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    def get(token: str | None = None, scheme: str = "Bearer") -> Any:
        headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
        return client.get("/metrics", headers=headers)

    settings.CALLBRIDGE_METRICS_TOKEN = ""
    settings.CALLBRIDGE_METRICS_ALLOWED = []
    assert get().status_code == 404  # never open by default
    assert get(TOKEN).status_code == 404

    settings.CALLBRIDGE_METRICS_TOKEN = TOKEN
    missing = get()
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert get(TOKEN[:-1] + "X").status_code == 403
    assert ((TOKEN[:-1] + "X").encode(), TOKEN.encode()) in compared  # in constant time
    assert get(TOKEN + "X").status_code == 403
    assert get(TOKEN, scheme="Basic").status_code == 401
    assert TOKEN.encode() not in missing.content
    right = get(TOKEN)
    assert right.status_code == 200
    assert right["Content-Type"] == PROMETHEUS_TEXT
    assert "callbridge_calls" in right.content.decode()
    openmetrics = client.get(
        "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"},
    )
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.content.endswith(b"# EOF\n")
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405

    # Allowed addresses: the client address decides; a wrong token is never ignored.
    settings.CALLBRIDGE_METRICS_ALLOWED = ["10.0.0.0/8", "::1"]
    assert get().status_code == 401
    settings.CALLBRIDGE_METRICS_ALLOWED = ["127.0.0.0/8"]
    assert get().status_code == 200
    assert get("wrong-token-wrong-token").status_code == 403
    settings.CALLBRIDGE_METRICS_TOKEN = ""
    assert get().status_code == 200
    assert get(TOKEN).status_code == 403
    settings.CALLBRIDGE_METRICS_ALLOWED = ["192.168.0.0/16"]
    assert get().status_code == 403


@pytest.mark.django_db
def test_it_ships_a_grafana_dashboard_of_metrics_that_exist(settings: Any) -> None:
    settings.CALLBRIDGE_METRICS_TOKEN = TOKEN
    text = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).content
    # Every family is described even with no sample yet (no separate worker, no lag yet).
    described = dict(re.findall(r"^# TYPE (callbridge_\S+) (\S+)$", text.decode(), re.M))
    families = {name.removesuffix("_total"): kind for name, kind in described.items()}
    exposed = {name + suffix for name, kind in families.items() for suffix in SAMPLE_SUFFIXES[kind]}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\b(callbridge_[a-z_]+)", expr))
        assert names, expr
        assert names <= exposed, f"{expr}: no metric {sorted(names - exposed)}"
        named |= names
    # …and the dashboard shows every family.
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert set(families) <= shown, sorted(set(families) - shown)


async def scrape(http: AsyncClient) -> Samples:
    async with asyncio.timeout(10):
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return parse(response.content.decode())


async def until(
    http: AsyncClient, holds: Callable[[Samples], bool], within: float = 10.0
) -> Samples:
    async with asyncio.timeout(within):
        while not holds(samples := await scrape(http)):  # noqa: ASYNC110 (counted per batch)
            await asyncio.sleep(0.2)
    return samples


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_it_counts_a_real_call(asgi_app: Any, settings: Any, tmp_path: Path) -> None:
    settings.CALLBRIDGE_METRICS_TOKEN = TOKEN
    settings.MEDIA_ROOT = tmp_path
    http = AsyncClient()
    before = await scrape(http)
    call = await start_live_call(asgi_app)
    try:
        during = await scrape(http)
        # Both legs connected: one set-up latency each, observed by the media worker.
        setups = value(during, "callbridge_call_setup_seconds_count")
        assert setups == value(before, "callbridge_call_setup_seconds_count") + 2
        assert value(during, "callbridge_call_setup_seconds_sum") > value(
            before, "callbridge_call_setup_seconds_sum"
        )
        assert value(during, "callbridge_calls", state="active", queue="default") == 1
        assert value(during, "callbridge_calls", state="ringing", queue="default") == 0
        for role in ("user", "operator"):
            assert value(during, "callbridge_legs", role=role, media_state="connected") == 1
        worker = settings.CALLBRIDGE_MEDIA_WORKER_NAME
        assert value(during, "callbridge_media_worker_calls", worker=worker) == 1
        assert value(during, "callbridge_media_worker_legs", worker=worker) == 2
        # Packets are counted in batches (once a second): they grow while the call talks.
        forwarded = "callbridge_media_packets_forwarded_total"
        grown = await until(
            http,
            lambda now: value(now, forwarded) > value(during, forwarded) + 50,
            within=PACKET_COUNT_INTERVAL_S * 5 + 5,
        )
        assert value(grown, "callbridge_media_packets_lost_total") == value(
            before, "callbridge_media_packets_lost_total"
        )  # nothing is lost on loopback
        hung_up = await call.post(f"/api/calls/{call.call_id}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        # Read at scrape time from the database: the ended call and its legs are gone.
        after = await scrape(http)
        assert not sum(values_of(after, "callbridge_calls").values())
        assert not sum(values_of(after, "callbridge_legs").values())
        assert value(after, "callbridge_call_setup_seconds_count") == setups
        ended = {"state": "ended", "reason": "hangup"}
        assert value(after, "callbridge_calls_ended_total", **ended) == (
            value(before, "callbridge_calls_ended_total", **ended) + 1
        )
    finally:
        await end_live_call(call)


def forwarded_scrape(server: Any, forwarded_for: str) -> int:
    """A scrape without the token through the (trusted) proxy on 127.0.0.1."""
    request = urllib.request.Request(
        server.url + "/metrics", headers={"X-Forwarded-For": forwarded_for}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def helper(server: Any, code: str) -> None:
    """Another process of the deployment (same PROMETHEUS_MULTIPROC_DIR) runs `code`."""
    server.manage("shell", "-c", f"from calls import metrics; {code}")


@pytest.mark.daphne
def test_it_sums_the_processes_of_a_host_in_one_scrape(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    with running_server(
        tmp_path / "data",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        CALLBRIDGE_METRICS_TOKEN=TOKEN,
        CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS="20",
        CALLBRIDGE_METRICS_ALLOWED="10.9.0.0/16",
        CALLBRIDGE_TRUSTED_PROXIES="127.0.0.1",
    ) as server:
        # Two short-lived processes each observe a MOS sample and a lag daphne never has;
        # the second is killed with its per-process gauge still set: the scrape forgets it.
        helper(server, "metrics.observe_mos(4.3); metrics.observe_loop_lag('helper', 5.0)")
        with pytest.raises(subprocess.CalledProcessError):
            helper(
                server,
                "import os, signal; metrics.observe_mos(4.3); "
                "metrics.observe_loop_lag('helper', 5.0); metrics.set_loop_lag_max('helper', 5.0); "
                "os.kill(os.getpid(), signal.SIGKILL)",
            )

        def scraped() -> Samples:
            status, text, headers = server.request("GET", "/metrics", TOKEN)
            assert status == 200 and headers["Content-Type"] == PROMETHEUS_TEXT
            return parse(text)

        samples = scraped()
        for _ in range(100):  # daphne's own sampler: its first window of 10 samples
            if values_of(samples, "callbridge_event_loop_lag_max_seconds"):
                break
            samples = scraped()
        assert value(samples, "callbridge_media_mos_count") == 2
        assert value(samples, "callbridge_media_mos_sum") == pytest.approx(8.6)
        assert value(samples, "callbridge_event_loop_lag_seconds_count", process="helper") == 2
        assert value(samples, "callbridge_event_loop_lag_seconds_count", process="serve") > 0
        live = values_of(samples, "callbridge_event_loop_lag_max_seconds")
        assert server.process is not None
        assert [dict(labels) for labels in live] == [
            {"process": "serve", "pid": str(server.process.pid)}
        ]
        assert not [name for name in os.listdir(shared) if name.startswith("gauge_liveall")][1:]
        assert value(samples, "callbridge_webhook_backlog") == 0
        status, _, _ = server.request("GET", "/metrics", "wrong-token-wrong-token")
        assert status == 403
        # Allowed addresses are judged on the client address: behind the trusted proxy, the
        # address it forwarded, not the proxy's.
        assert forwarded_scrape(server, "10.9.8.7") == 200
        assert forwarded_scrape(server, "10.1.1.1") == 401
        assert forwarded_scrape(server, "10.1.1.1, 10.9.8.7") == 200  # the proxy's entry
        assert forwarded_scrape(server, "10.9.8.7, 10.1.1.1") == 401  # the client's claim
    log = server.log.read_text()
    assert "/metrics" in log and TOKEN not in log
