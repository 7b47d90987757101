"""Enqueue figures of `pgsched bench`: one call on a warm app, bulk paths against the server's ceiling.

Interface-side tool. No worker runs: every figure is the enqueue side alone. Bulk paths insert
the same number of rows into an emptied (vacuumed) table: ``enqueue_many`` in calls of 1,000,
one ``enqueue_many`` of everything (one COPY), and the server's own ``INSERT ... SELECT
generate_series`` (the ceiling no client path can beat), in rounds of rotating order.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from pgsched.app import Pgsched
from pgsched.bench.workers import QUEUE
from pgsched.config import Settings
from pgsched.queries import query

__all__ = ["ROUNDS", "bulk_paths", "interleaved", "percentiles", "single_enqueue"]

CHUNK = 1_000
ROUNDS = 3  # passes of each bulk path in a run

# Utility statements cannot be PREPAREd, so they are not named queries.
_VACUUM = "VACUUM pgsched.jobs"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of at least two samples."""
    cuts = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return cuts[49], cuts[98]


def single_enqueue(dsn: str, samples: int) -> dict[str, float]:
    """p50/p99 ms of one ``app.enqueue`` call on a warm app (its pool open, statements prepared)."""
    app = Pgsched(settings=Settings(dsn=dsn))
    try:
        for _ in range(min(50, samples)):
            app.enqueue("noop", queue=QUEUE)
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            app.enqueue("noop", queue=QUEUE)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        app.close()
        _empty(dsn)
    p50, p99 = percentiles(times)
    return {"enqueue.single_p50_ms": p50, "enqueue.single_p99_ms": p99}


def _empty(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_delete_queue"), {"queue": QUEUE})
        conn.execute(_VACUUM)


def _rate(dsn: str, n: int, insert: Callable[[], Any]) -> float:
    started = time.perf_counter()
    insert()
    elapsed = time.perf_counter() - started
    _empty(dsn)
    return n / elapsed


def bulk_paths(dsn: str, n: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Jobs/s of n rows: enqueue_many in calls of 1,000, one enqueue_many (one COPY), INSERT ... SELECT; each the
    median of ``rounds`` rounds (see ``interleaved``)."""
    items = [{"task": "noop", "queue": QUEUE} for _ in range(n)]
    app = Pgsched(settings=Settings(dsn=dsn))
    try:
        app.enqueue_many(items[:CHUNK])  # warm the pool and the statements
        _empty(dsn)

        def calls() -> None:
            for start in range(0, n, CHUNK):
                app.enqueue_many(items[start : start + CHUNK])

        with psycopg.connect(dsn, autocommit=True) as conn:
            series = query("bench_insert_series")
            return interleaved(
                {
                    "enqueue.many_1000_per_s": lambda: _rate(dsn, n, calls),
                    "enqueue.copy_per_s": lambda: _rate(dsn, n, lambda: app.enqueue_many(items)),
                    "enqueue.insert_select_per_s": lambda: _rate(
                        dsn, n, lambda: conn.execute(series, {"queue": QUEUE, "n": n})
                    ),
                },
                rounds,
            )
    finally:
        app.close()


def interleaved(paths: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each path's median over ``rounds`` rounds, the order rotated one step a round: each path runs first as
    often as the others (the first of a round runs slower, likely for the previous pass's dirty buffers and WAL:
    in one fixed order, calls of 1,000 measured 67 % of COPY where COPY first gave 82 %, medians of 8 rounds),
    and a share of two paths compares passes seconds apart, not minutes."""
    names = list(paths)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(rounds):
        start = turn % len(names)
        for name in names[start:] + names[:start]:
            rates[name].append(paths[name]())
    return {name: statistics.median(values) for name, values in rates.items()}
