"""Cold-worker drains of `pgsched bench`: a backlog, a statistics state, then N fresh worker processes.

Interface-side tool. Each drain gets a fresh clone (no statistics), inserts the backlog
server-side, takes statistics as the state says (``none``; ``after-load``: ANALYZE once the
backlog is in, as autoanalyze would; ``every-0.5s``: ANALYZE in a background thread every 0.5 s
while the workers drain), then spawns the workers. Timed by the database (first ``started_at``
to last ``finished_at``), and by the wall clock from the first start and from the spawn to the
moment nothing is queued or running (which includes the last completion flush's commit).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE, cpu_seconds, wait_until_drained, wait_until_started, worker_processes
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.queries import query

__all__ = ["STATS_STATES", "DrainResult", "cold_drain", "timed_drain"]

STATS_STATES = ("none", "after-load", "every-0.5s")
ANALYZE_EVERY = 0.5

# Utility statements cannot be PREPAREd, so they are not named queries.
_ANALYZE = "ANALYZE pgsched.jobs"
_CHECKPOINT = "CHECKPOINT"

_serial = itertools.count()


@dataclass(frozen=True)
class DrainResult:
    stats: str
    processes: int
    jobs: int
    jobs_per_s: float
    from_first_jobs_per_s: float
    from_spawn_jobs_per_s: float
    first_job_s: float
    worker_cpu_ms_per_job: float
    postgres_cpu_ms_per_job: float
    analyzes: int
    autoanalyzes: int
    dead_tuples_per_job: float = 0.0  # made by the drain (non-HOT updates and deletes), every partition
    claim_path_dead_tuples_per_job: float = 0.0  # of them in jobs_queued (the table the claim scans)
    running_dead_tuples_per_job: float = 0.0  # of them in jobs_running

    def figures(self) -> dict[str, float]:
        key = f"drain.{self.stats}.{self.processes}"
        return {
            f"{key}.jobs_per_s": self.jobs_per_s,
            f"{key}.from_first_jobs_per_s": self.from_first_jobs_per_s,
            f"{key}.from_spawn_jobs_per_s": self.from_spawn_jobs_per_s,
            f"{key}.first_job_s": self.first_job_s,
            f"{key}.worker_cpu_ms_per_job": self.worker_cpu_ms_per_job,
            f"{key}.postgres_cpu_ms_per_job": self.postgres_cpu_ms_per_job,
            f"{key}.analyzes": float(self.analyzes),
            f"{key}.autoanalyzes": float(self.autoanalyzes),
            f"{key}.dead_tuples_per_job": self.dead_tuples_per_job,
            f"{key}.claim_path_dead_tuples_per_job": self.claim_path_dead_tuples_per_job,
            f"{key}.running_dead_tuples_per_job": self.running_dead_tuples_per_job,
        }


@contextmanager
def _analyzing(dsn: str, enabled: bool) -> Iterator[list[int]]:
    """While open (when enabled), ANALYZE pgsched.jobs every 0.5 s; yields a one-item run counter."""
    count = [0]
    stop = threading.Event()

    def loop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(_ANALYZE)
                count[0] += 1
                stop.wait(ANALYZE_EVERY)

    thread = threading.Thread(target=loop, name="bench-analyze", daemon=True)
    if enabled:
        thread.start()
    try:
        yield count
    finally:
        stop.set()
        if enabled:
            thread.join(30)


def cold_drain(databases: Databases, *, backlog: int, processes: int, concurrency: int, stats: str) -> DrainResult:
    """Drain ``backlog`` no-op jobs with ``processes`` freshly started workers in statistics state ``stats``."""
    if stats not in STATS_STATES:
        raise ConfigurationError(f"unknown statistics state {stats!r}")
    dsn = databases.clone(f"drain{next(_serial)}")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # What users get: `pgsched migrate` made these partitions before any worker; a fresh clone has none.
            conn.execute(query("bench_history_partitions"), {"width": Settings().history_partition_seconds})
            conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": backlog})
            if stats == "after-load":
                conn.execute(_ANALYZE)
            conn.execute(_CHECKPOINT)
            return timed_drain(conn, dsn, backlog=backlog, processes=processes, concurrency=concurrency, stats=stats)
    finally:
        databases.drop(dsn)


def timed_drain(
    conn: psycopg.Connection[Any], dsn: str, *, backlog: int, processes: int, concurrency: int, stats: str
) -> DrainResult:
    """Drain the ``backlog`` already queued in ``dsn`` with fresh worker processes, and time it."""
    before = _settled_table_stats(conn)
    spawned = time.perf_counter()
    with (
        _analyzing(dsn, stats == "every-0.5s") as analyzes,
        worker_processes(dsn, processes, concurrency=concurrency) as procs,
    ):
        wait_until_started(conn, procs)
        first = time.perf_counter()
        workers_before, backends_before = cpu_seconds(conn, procs)
        wait_until_drained(conn, procs, timeout=max(300.0, backlog / 100))
        drained = time.perf_counter()
        workers_after, backends_after = cpu_seconds(conn, procs)
    table = _settled_table_stats(conn)
    row = conn.execute(query("bench_drain_window"), {"queue": QUEUE}).fetchone()
    done, seconds = (int(row[0]), float(row[1])) if row else (0, 0.0)
    if done != backlog or seconds <= 0:
        counts = dict(conn.execute(query("bench_state_counts"), {"queue": QUEUE}).fetchall())
        raise ConfigurationError(f"drain check failed: {counts}")
    return DrainResult(
        stats=stats,
        processes=processes,
        jobs=backlog,
        jobs_per_s=backlog / seconds,
        from_first_jobs_per_s=backlog / (drained - first),
        from_spawn_jobs_per_s=backlog / (drained - spawned),
        first_job_s=first - spawned,
        worker_cpu_ms_per_job=(workers_after - workers_before) * 1000 / backlog,
        postgres_cpu_ms_per_job=(backends_after - backends_before) * 1000 / backlog,
        analyzes=analyzes[0] + (stats == "after-load"),
        autoanalyzes=int(table[4]),
        dead_tuples_per_job=(int(table[6]) - int(before[6])) / backlog,
        claim_path_dead_tuples_per_job=(int(table[7]) - int(before[7])) / backlog,
        running_dead_tuples_per_job=(int(table[8]) - int(before[8])) / backlog,
    )


def _settled_table_stats(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """bench_table_stats once the counters stop moving (exiting backends flush theirs asynchronously)."""
    last: tuple[Any, ...] | None = None
    for _ in range(20):
        row = conn.execute(query("bench_table_stats")).fetchone()
        current = tuple(row) if row else (0,) * 10
        if current == last:
            return current
        last = current
        time.sleep(0.25)  # a reading a moment later, not a wait for a state: counters only settle
    return last or (0,) * 10
