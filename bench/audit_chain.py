"""What the audit chain costs a call event: each event's transaction timed from its start
to its commit returning (the seal runs on commit), with and without the seal.

    .venv/bin/python -m bench.audit_chain [--events 2000]
    DATABASE_URL=postgres://…/scratch .venv/bin/python -m bench.audit_chain

SQLite in a temporary data directory, or the database DATABASE_URL names (a scratch one:
it is migrated and written to). Events go one at a time, as a call's transitions do; the
figures are per event."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def database() -> Iterator[None]:
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["CALLBRIDGE_DATA_DIR"] = data_dir
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbridge.settings")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield


def timed(work: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return work(*args)
        finally:
            spent.append(time.perf_counter() - start)

    return run


def measure(events: int, block: int = 50) -> dict[str, list[float]]:
    """Per event: its time with the seal on commit, and without (blocks of each in turn,
    so a loaded machine weighs on both alike), and the seal's own time."""
    from django.db import connection, transaction

    from calls.models import Call, CallEvent, EndUserSession, audit_chain
    from calls.principals import SYSTEM, Principal

    real_seal = audit_chain.seal
    results: dict[str, list[float]] = {
        "sealed": [],
        "unsealed": [],
        "seal": [],
        "sealed (CPU)": [],
        "unsealed (CPU)": [],
    }
    sealing = timed(real_seal, results["seal"])
    for first in range(0, events, block):
        on = (first // block) % 2 == 0
        # ChainedModel.save looks `seal` up in its module at each commit.
        audit_chain.seal = sealing if on else (lambda model: 0)
        kind = "sealed" if on else "unsealed"
        for n in range(first, min(first + block, events)):
            if n % 10 == 0:  # a call's worth of events (each event snapshots its call)
                session, _ = EndUserSession.create(ttl_seconds=3600, display_name="Bench")
                caller = Principal.end_user(session)  # one open call per session
                call = Call.start(by=caller, mode="bridge", media_worker="embedded")
            start, cpu = time.perf_counter(), time.process_time()
            with transaction.atomic():
                call.record_event("bench.tick", SYSTEM, {"n": n})
            results[kind].append(time.perf_counter() - start)
            # This process's CPU: what a loaded machine skews least (SQLite runs in it).
            results[f"{kind} (CPU)"].append(time.process_time() - cpu)
        real_seal(CallEvent)  # the off block's rows, untimed
    audit_chain.seal = real_seal
    connection.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    with database():
        results = measure(args.events)
    ms = {name: [s * 1000 for s in values] for name, values in results.items()}
    for name, values in ms.items():
        cuts = statistics.quantiles(values, n=20)
        print(
            f"{name:14}: mean {statistics.fmean(values):.3f} ms, median {cuts[9]:.3f} ms, "
            f"p95 {cuts[18]:.3f} ms ({len(values)})"
        )
    for suffix in ("", " (CPU)"):
        sealed, unsealed = (statistics.median(ms[k + suffix]) for k in ("sealed", "unsealed"))
        print(
            f"added per event{suffix}: {sealed - unsealed:.3f} ms (medians; "
            f"{(sealed - unsealed) / unsealed:.0%} of an unsealed event)"
        )


if __name__ == "__main__":
    main()
