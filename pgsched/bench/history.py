"""`pgsched bench history`: what a long history of finished jobs costs (issue 20's scale targets).

Interface-side tool. Two scratch databases: one gets ``finished`` finished jobs bulk-loaded into its time
partitions (spread over ``days`` one-day partitions, 90 % succeeded, 8 % dead, 2 % cancelled), the other
none. Then, alternating between them, a cold drain of ``backlog`` no-op jobs; on the loaded one, the
read of finished jobs by id (GET /jobs/{id}, through the API's store), the first page of finished jobs by
state (GET /jobs?state=succeeded, likewise), the disk used per million finished jobs, and the time to drop a day.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pgsched.bench.drain import timed_drain
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE
from pgsched.errors import ConfigurationError
from pgsched.operator_store import OperatorStore
from pgsched.queries import query
from pgsched.store import AsyncJobStore

__all__ = ["HistoryResult", "history_bench"]

T = TypeVar("T")
_PAGE = 50  # the API's default page size

_LOAD_CHUNK = 1_000_000
_PROBES = 1_000
_PAGES = 20
_DROPS = 3
# The drained bench jobs are kept past every time partition, so they land in the default partition, which is
# emptied after each drain (TRUNCATE), on both sides alike: the history stays as loaded.
# Utility statements cannot be PREPAREd, so they are not named queries.
_VACUUM = "VACUUM ANALYZE pgsched.{}"
_ANALYZE_PARENTS = "ANALYZE pgsched.jobs, pgsched.jobs_done"
_LOADERS = 2
_EMPTY_DEFAULT = "TRUNCATE pgsched.jobs_done_default"
_CHECKPOINT = "CHECKPOINT"


def _quantile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] if values else 0.0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class HistoryResult:
    finished: int
    days: int
    load_s: float
    bytes_per_million: float
    get_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    drop_day_ms: list[float] = field(default_factory=list)
    drain_empty: list[float] = field(default_factory=list)
    drain_history: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        return {
            "history.finished": float(self.finished),
            "history.load_s": self.load_s,
            "history.bytes_per_million": self.bytes_per_million,
            "history.get_ms.median": _median(self.get_ms),
            "history.get_ms.p95": _quantile(self.get_ms, 0.95),
            "history.get_ms.p99": _quantile(self.get_ms, 0.99),
            "history.page_ms.median": _median(self.page_ms),
            "history.page_ms.max": max(self.page_ms, default=0.0),
            "history.drop_day_ms.median": _median(self.drop_day_ms),
            "history.drain_empty_jobs_per_s.median": _median(self.drain_empty),
            "history.drain_loaded_jobs_per_s.median": _median(self.drain_history),
        }


def _load(dsn: str, finished: int, days: int) -> None:
    """Retention of ``days`` days and its one-day partitions first, then ``finished`` finished jobs spread over
    them, oldest first (ids rise with the finish time, as when jobs really finish one after another), straight
    into jobs_done in chunks: each of _LOADERS connections takes a contiguous share (its own days, so the two
    do not split the same index pages); then every partition vacuumed and analyzed, as autovacuum would have."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        made = conn.execute(query("bench_history_retention"), {"days": days}).fetchone()
    assert made is not None
    chunks = [(first, min(_LOAD_CHUNK, finished - first)) for first in range(0, finished, _LOAD_CHUNK)]

    def load(mine: list[tuple[int, int]]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for first, n in mine:
                params = {"first": first, "n": n, "total": finished, "days": days, "at": made[0]}
                conn.execute(query("bench_history_load"), params)

    share = -(-len(chunks) // _LOADERS)
    _in_parallel(load, [chunks[i : i + share] for i in range(0, len(chunks), share)])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_history_ids_taken"), {"total": finished})
        conn.execute(query("bench_history_recount"))
        names = [str(name) for (name,) in conn.execute(query("bench_history_leaves")).fetchall()]

    def vacuum(mine: list[str]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in mine:
                conn.execute(sql.SQL(_VACUUM).format(sql.Identifier(name)))
            conn.execute(_ANALYZE_PARENTS)

    _in_parallel(vacuum, [names[i::_LOADERS] for i in range(_LOADERS)])


def _in_parallel(work: Callable[[list[T]], None], shares: list[list[T]]) -> None:
    with ThreadPoolExecutor(len(shares)) as pool:
        for future in [pool.submit(work, share) for share in shares]:
            future.result()


async def _reads(dsn: str, ids: list[int]) -> tuple[list[float], list[float]]:
    """GET /jobs/{id} and the first page of GET /jobs?state=succeeded as the API runs them (its store, one
    more row than the page to know whether a next page exists): ms of each call."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        store = AsyncJobStore(pool)
        await store.job_get(ids[0])  # the pool's connection and the catalog caches, once
        get_ms = []
        for job_id in ids:
            started = time.perf_counter()
            if await store.job_get(job_id) is None:
                raise ConfigurationError(f"history job {job_id} not found")
            get_ms.append((time.perf_counter() - started) * 1000)
        page_ms = []
        for _ in range(_PAGES):
            started = time.perf_counter()
            await OperatorStore(pool).job_list(state="succeeded", limit=_PAGE + 1)
            page_ms.append((time.perf_counter() - started) * 1000)
    return get_ms, page_ms


def _drain(dsn: str, backlog: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": backlog})
        conn.execute(_CHECKPOINT)
        rate = timed_drain(conn, dsn, backlog=backlog, processes=1, concurrency=10, stats="none").jobs_per_s
        conn.execute(_EMPTY_DEFAULT)
    return rate


def _drop_days(dsn: str) -> list[float]:
    """Drop the _DROPS biggest one-day partitions one by one (as the leader does): ms of each."""
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (name,) in conn.execute(query("bench_history_biggest"), {"n": _DROPS}).fetchall():
            started = time.perf_counter()
            conn.execute(query("bench_history_drop"), {"name": name})
            times.append((time.perf_counter() - started) * 1000)
    return times


def history_bench(databases: Databases, *, finished: int, days: int, backlog: int, runs: int) -> HistoryResult:
    loaded = databases.clone("history")
    empty = databases.clone("empty")
    started = time.perf_counter()
    _load(loaded, finished, days)
    load_s = time.perf_counter() - started
    # After the partitions are made: a retention of 10 years would have had them made 400 days ahead (empty ones,
    # each one more index to probe). The drains run no leader, so none are made later.
    for dsn in (loaded, empty):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(query("bench_history_queue_kept"), {"queue": QUEUE})
    with psycopg.connect(loaded, autocommit=True) as conn:
        row = conn.execute(query("bench_history_span")).fetchone()
        assert row is not None
    result = HistoryResult(finished, days, load_s, float(row[0] or 0) * 1_000_000 / max(1, finished))
    low, high = int(row[1] or 1), int(row[2] or 1)
    rng = random.Random(20)
    result.get_ms, result.page_ms = asyncio.run(_reads(loaded, [rng.randint(low, high) for _ in range(_PROBES)]))
    for _ in range(runs):  # alternating, so a change of machine load touches both sides alike
        result.drain_empty.append(_drain(empty, backlog))
        result.drain_history.append(_drain(loaded, backlog))
    result.drop_day_ms = _drop_days(loaded)
    databases.drop(loaded)
    databases.drop(empty)
    return result
