"""What a `/metrics` scrape returns: this host's process metrics (calls.metrics) and the
state of the deployment read from the database at scrape time.

Calls, legs, media workers' load and the webhook backlog are counted by a few aggregate
queries on every scrape rather than kept as counters: the database is the one truth every
daphne and media worker shares, so the answer is right whichever daphne is scraped, after
any restart, with nothing to reconcile. These gauges are deployment-wide: with several
daphnes scraped, dashboards take `max` over instances (docs/integrations.md).

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR): the process metrics are summed from the
per-process files by prometheus_client's MultiProcessCollector. A process that exited
cleanly marks itself dead (calls.metrics); one that was killed is found here (its pid is
gone) and marked dead before the scrape, so its per-process gauges vanish while its
counters and histograms keep counting in the sums.
"""

from __future__ import annotations

import glob
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from calls import metrics
from calls.models import (
    Call,
    DeliveryState,
    Leg,
    MediaState,
    MediaWorkerStatus,
    Queue,
    WebhookDelivery,
)
from calls.models.call import OPEN_STATES

# A leg whose peer connection a media worker holds (calls.limits counts the same).
_WITH_PEER = frozenset({MediaState.CONNECTING, MediaState.CONNECTED, MediaState.DISCONNECTED})
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


class DatabaseCollector(Collector):
    """The deployment's state, one aggregate query per kind of row."""

    def collect(self) -> Iterator[Metric]:
        # Open calls grouped by state, queue and worker: both the calls and the workers' load.
        open_calls = list(
            Call.objects.filter(state__in=OPEN_STATES)
            .order_by()  # no default ordering in the GROUP BY
            .values_list("state", "queue__public_id", "media_worker")
            .annotate(count=Count("pk"))
        )
        yield _calls(open_calls)
        yield from _legs_and_workers(open_calls)
        yield from _webhooks()


def _calls(open_calls: list[tuple[str, str | None, str, int]]) -> Metric:
    calls = GaugeMetricFamily(
        "callbridge_calls",
        "Open calls by state and queue (public id; empty: no queue)",
        labels=["state", "queue"],
    )
    counted: dict[tuple[str, str], int] = {
        (state, queue): 0
        for state in sorted(OPEN_STATES)
        for queue in ["", *Queue.objects.values_list("public_id", flat=True)]
    }
    for state, queue, _, count in open_calls:
        counted[(state, queue or "")] = counted.get((state, queue or ""), 0) + count
    for (state, queue), count in sorted(counted.items()):
        calls.add_metric([state, queue], count)
    return calls


def _legs_and_workers(open_calls: list[tuple[str, str | None, str, int]]) -> Iterator[Metric]:
    legs = GaugeMetricFamily(
        "callbridge_legs",
        "Legs of open calls (parties still on them) by role and media state",
        labels=["role", "media_state"],
    )
    by_worker: dict[str, dict[str, int]] = {}
    rows = (
        Leg.objects.filter(call__state__in=OPEN_STATES, left_at=None)
        .order_by()
        .values_list("role", "media_state", "call__media_worker")
        .annotate(count=Count("pk"))
    )
    per_state: dict[tuple[str, str], int] = defaultdict(int)
    for role, media_state, worker, count in rows:
        per_state[(role, media_state)] += count
        if media_state in _WITH_PEER:
            by_worker.setdefault(worker, {"calls": 0, "legs": 0})["legs"] += count
    for (role, media_state), count in sorted(per_state.items()):
        legs.add_metric([role, media_state], count)
    yield legs

    for _, _, worker, count in open_calls:
        by_worker.setdefault(worker, {"calls": 0, "legs": 0})["calls"] += count
    live = {row.name: row for row in MediaWorkerStatus.objects.live()}
    for name in live:  # a live worker with nothing on it is shown at 0
        by_worker.setdefault(name, {"calls": 0, "legs": 0})
    calls = GaugeMetricFamily(
        "callbridge_media_worker_calls", "Open calls placed on each media worker", labels=["worker"]
    )
    leg_gauge = GaugeMetricFamily(
        "callbridge_media_worker_legs",
        "Legs with a peer connection on each media worker (connecting, connected, disconnected)",
        labels=["worker"],
    )
    capacity = GaugeMetricFamily(
        "callbridge_media_worker_capacity_calls",
        "Most calls each separate media worker takes (its --capacity; the embedded worker has"
        " no cap and no sample)",
        labels=["worker"],
    )
    in_use = GaugeMetricFamily(
        "callbridge_media_worker_capacity_used_ratio",
        "Open calls on each separate media worker over its capacity (0-1)",
        labels=["worker"],
    )
    up = GaugeMetricFamily(
        "callbridge_media_worker_up",
        "Separate media workers heard from within CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S, by state",
        labels=["worker", "state"],
    )
    for name, counts in sorted(by_worker.items()):
        if not name:
            continue  # calls made before any placement (none in practice)
        calls.add_metric([name], counts["calls"])
        leg_gauge.add_metric([name], counts["legs"])
        status = live.get(name)
        if status is not None:
            capacity.add_metric([name], status.capacity)
            in_use.add_metric([name], counts["calls"] / status.capacity if status.capacity else 1)
            up.add_metric([name, status.state], 1)
    yield from (calls, leg_gauge, capacity, in_use, up)


def _webhooks() -> Iterator[Metric]:
    pending = WebhookDelivery.objects.filter(state=DeliveryState.PENDING).aggregate(
        count=Count("pk"), oldest=Min("created_at")
    )
    backlog = GaugeMetricFamily(
        "callbridge_webhook_backlog", "Webhook deliveries waiting to be delivered (pending)"
    )
    backlog.add_metric([], pending["count"])
    oldest = GaugeMetricFamily(
        "callbridge_webhook_oldest_pending_age_seconds",
        "Age of the oldest pending webhook delivery (0: none pending)",
    )
    age = 0.0
    if pending["oldest"] is not None:
        age = max((timezone.now() - pending["oldest"]).total_seconds(), 0.0)
    oldest.add_metric([], age)
    yield backlog
    yield oldest


def forget_dead_processes(path: str) -> None:
    """Mark the processes whose per-process gauge files outlived them (killed) dead."""
    pids = set()
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.match(os.path.basename(file))
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if pid != os.getpid() and not _alive(pid):
            multiprocess.mark_process_dead(pid, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class _ThisProcess(Collector):
    """The default registry's metrics (process, platform and ours) in one-process mode."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def scrape(accept: str = "") -> tuple[bytes, str]:
    """The whole `/metrics` answer and its content type: the format the scraper's Accept
    header asks for (OpenMetrics or Prometheus text 1.0.0), else Prometheus text 0.0.4."""
    registry = CollectorRegistry(auto_describe=False)
    path = metrics.multiprocess_dir()
    if path is not None:
        forget_dead_processes(path)
        multiprocess.MultiProcessCollector(registry, path)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
