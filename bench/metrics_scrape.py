"""How long a `/metrics` scrape takes with N open calls (docs/PERFORMANCE.md, "/metrics").

    .venv/bin/python -m bench.metrics_scrape                 # 250 calls, 200 scrapes
    .venv/bin/python -m bench.metrics_scrape --calls 1000 --history 100000

A fresh SQLite data directory gets N open calls (active, some ringing in queues), two legs
each, two separate media workers' heartbeats, a pending webhook delivery per call and
`--history` finished calls (the scrape must not read those); then a real `manage.py serve`
is scraped over HTTP with the metrics token, one scrape at a time, as Prometheus does.
The scrape's own time (the database queries and the text) is also timed in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from callbridge.local_server import LocalServer, manage, outside_environment, serving

TOKEN = "bench-metrics-token-0123456789"  # noqa: S105 (a throwaway server's)


def populate(calls: int, history: int) -> None:
    """Rows as a busy deployment has them (this process's Django, the bench's database)."""
    from django.utils import timezone

    from calls.models import (
        Call,
        CallEvent,
        Leg,
        MediaWorkerStatus,
        Queue,
        WebhookDelivery,
        WebhookEndpoint,
    )

    now = timezone.now()
    queues = [
        Queue.objects.get_or_create(public_id=f"q{n}", defaults={"name": f"Q{n}"})[0]
        for n in range(3)
    ]
    for name in ("mw-1", "mw-2"):
        # Beating "in the future": live for the whole bench without a heartbeat task.
        MediaWorkerStatus.objects.update_or_create(
            name=name, defaults={"capacity": calls, "last_seen": now + timedelta(days=1)}
        )
    open_calls = [
        Call(
            state="ringing" if n % 10 == 0 else "active",
            direction="inbound",
            created_by="bench",
            media_worker=f"mw-{n % 2 + 1}",
            queue=queues[n % 3],
            queued_at=now,
            answered_at=None if n % 10 == 0 else now,
        )
        for n in range(calls)
    ]
    finished = [
        Call(
            state="ended",
            direction="inbound",
            created_by="bench",
            ended_at=now,
            end_reason="hangup",
        )
        for _ in range(history)
    ]
    Call.objects.bulk_create(open_calls, batch_size=2000)
    Call.objects.bulk_create(finished, batch_size=2000)
    legs = [
        Leg(call=call, role=role, party=f"bench:{role}", media_state="connected")
        for call in open_calls
        for role in ("user", "operator")
    ]
    Leg.objects.bulk_create(legs, batch_size=2000)
    endpoint = WebhookEndpoint.objects.create(url="https://example.invalid/hook", secret="x")  # noqa: S106
    events = CallEvent.objects.bulk_create(
        [
            CallEvent(call=call, name="call.ringing", actor="bench", actor_role="system")
            for call in open_calls
        ]
    )
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                event=event,
                call=event.call,
                message_id=WebhookDelivery.new_message_id(),
                retry_until=now + timedelta(days=1),
            )
            for event in events
        ]
    )


def timed(scrape: Callable[[], object], times: int, clock: Callable[[], float]) -> list[float]:
    spent = []
    for _ in range(times):
        started = clock()
        scrape()
        spent.append((clock() - started) * 1000)
    return spent


def summary(name: str, spent: list[float]) -> str:
    ordered = sorted(spent)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (
        f"| {name} | {len(spent)} | {statistics.median(spent):.1f} | {p95:.1f} | {max(spent):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--history", type=int, default=10_000, help="finished calls")
    parser.add_argument("--scrapes", type=int, default=200)
    options = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="callbridge-metrics-bench-"))
    env = outside_environment()
    env.update(CALLBRIDGE_DATA_DIR=str(data), CALLBRIDGE_METRICS_TOKEN=TOKEN)
    manage(env, "migrate", "--noinput")
    os.environ.update(CALLBRIDGE_DATA_DIR=str(data), CALLBRIDGE_METRICS_TOKEN=TOKEN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbridge.settings")
    import django

    django.setup()
    from calls.metrics_scrape import scrape

    populate(options.calls, options.history)
    text = scrape()[0].decode()
    assert f'callbridge_media_worker_calls{{worker="mw-1"}} {options.calls // 2}.0' in text, text
    in_process = timed(scrape, options.scrapes, time.perf_counter)
    # CPU time: what a scrape costs whatever else the machine runs (SQLite is in-process).
    in_process_cpu = timed(scrape, options.scrapes, time.process_time)

    server = LocalServer.on_free_port(env, data / "serve.log")

    def over_http() -> None:
        request = urllib.request.Request(  # noqa: S310 (our own http:// base URL)
            server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    with serving(server, ("--access-log", str(data / "access.log"))):
        over_http()  # the first request warms the server's imports
        http = timed(over_http, options.scrapes, time.perf_counter)

    load = os.getloadavg()[0]
    print(
        f"{options.calls} open calls ({2 * options.calls} legs, {options.calls} pending "
        f"webhook deliveries), {options.history} finished calls, SQLite; load {load:.2f}"
    )
    print()
    print("| scrape | scrapes | median ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    print(summary("in process (queries + text), wall clock", in_process))
    print(summary("in process (queries + text), CPU time", in_process_cpu))
    print(summary("over HTTP (a real `manage.py serve`)", http))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
