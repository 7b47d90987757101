"""`pgsched bench history`: what a long history of finished jobs costs (issue 20's scale targets).

Interface-side tool. Two scratch databases: one gets ``finished`` finished jobs bulk-loaded into its time
partitions (spread over ``days`` one-day partitions, 90 % succeeded, 8 % dead, 2 % cancelled), the other
none. Then, alternating between them, a cold drain of ``backlog`` no-op jobs; on the loaded one, the
primary-key read of a finished job (GET /jobs/{id}), the first page of finished jobs by state (GET
/jobs?state=succeeded), the disk used per million finished jobs, and the time to drop one day.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgsched.bench.drain import timed_drain
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE
from pgsched.enqueue_rows import list_params
from pgsched.queries import query

__all__ = ["HistoryResult", "history_bench"]

_LOAD_CHUNK = 1_000_000
_PROBES = 200
# The drained bench jobs are kept past every time partition, so they land in the default partition, which is
# emptied after each drain (TRUNCATE), on both sides alike: the history stays as loaded.
# Utility statements cannot be PREPAREd, so they are not named queries.
_VACUUM = "VACUUM ANALYZE pgsched.jobs"
_EMPTY_DEFAULT = "TRUNCATE pgsched.jobs_done_default"
_CHECKPOINT = "CHECKPOINT"


@dataclass
class HistoryResult:
    finished: int
    days: int
    load_s: float
    bytes_per_million: float
    get_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    drop_day_ms: float = 0.0
    drain_empty: list[float] = field(default_factory=list)
    drain_history: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        return {
            "history.finished": float(self.finished),
            "history.load_s": self.load_s,
            "history.bytes_per_million": self.bytes_per_million,
            "history.get_ms.median": statistics.median(self.get_ms) if self.get_ms else 0.0,
            "history.get_ms.p95": sorted(self.get_ms)[int(len(self.get_ms) * 0.95)] if self.get_ms else 0.0,
            "history.page_ms.median": statistics.median(self.page_ms) if self.page_ms else 0.0,
            "history.drop_day_ms": self.drop_day_ms,
            "history.drain_empty_jobs_per_s.median": statistics.median(self.drain_empty) if self.drain_empty else 0.0,
            "history.drain_loaded_jobs_per_s.median": (
                statistics.median(self.drain_history) if self.drain_history else 0.0
            ),
        }


def _load(conn: psycopg.Connection[Any], finished: int, days: int) -> None:
    """Retention of ``days`` days, its one-day partitions, then ``finished`` finished jobs spread over them."""
    conn.execute(query("bench_history_retention"), {"days": days})
    conn.execute(query("bench_notify_off"))
    done = 0
    while done < finished:
        n = min(_LOAD_CHUNK, finished - done)
        conn.execute(query("bench_history_load"), {"n": n, "days": days})
        done += n
    conn.execute(_VACUUM)


def _ms(conn: psycopg.Connection[Any], sql: Any, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    conn.execute(sql, params).fetchall()
    return (time.perf_counter() - started) * 1000


def history_bench(databases: Databases, *, finished: int, days: int, backlog: int, runs: int) -> HistoryResult:
    loaded = databases.clone("history")
    empty = databases.clone("empty")
    for dsn in (loaded, empty):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(query("bench_history_queue_kept"), {"queue": QUEUE})
    with psycopg.connect(loaded, autocommit=True) as conn:
        started = time.perf_counter()
        _load(conn, finished, days)
        load_s = time.perf_counter() - started
        row = conn.execute(query("bench_history_span")).fetchone()
        assert row is not None
        result = HistoryResult(finished, days, load_s, float(row[0] or 0) * 1_000_000 / max(1, finished))
        low, high = int(row[1] or 1), int(row[2] or 1)
        rng = random.Random(20)
        conn.execute(query("job_get"), {"id": low})  # warm the catalog caches once
        result.get_ms = [_ms(conn, query("job_get"), {"id": rng.randint(low, high)}) for _ in range(_PROBES)]
        page = list_params("succeeded", None, None, None, 50)
        result.page_ms = [_ms(conn, query("job_list"), page) for _ in range(20)]
    for _ in range(runs):  # alternating, so a change of machine load touches both sides alike
        for dsn, rates in ((empty, result.drain_empty), (loaded, result.drain_history)):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": backlog})
                conn.execute(_CHECKPOINT)
                rates.append(
                    timed_drain(conn, dsn, backlog=backlog, processes=1, concurrency=10, stats="none").jobs_per_s
                )
                conn.execute(_EMPTY_DEFAULT)
    with psycopg.connect(loaded, autocommit=True) as conn:
        biggest = conn.execute(query("bench_history_biggest")).fetchone()
        if biggest is not None:
            started = time.perf_counter()
            conn.execute(query("bench_history_drop"), {"name": biggest[0]})
            result.drop_day_ms = (time.perf_counter() - started) * 1000
    databases.drop(loaded)
    databases.drop(empty)
    return result
