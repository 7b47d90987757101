"""Backlog and ceiling figures of `pgsched bench`: insert ceiling, drain at a large backlog, dead tuples.

Interface-side tool, never imported by the worker. ``insert_ceiling`` times the database's own
``INSERT ... SELECT generate_series`` into ``pgsched.jobs`` (the bar for ``enqueue_many``).
``backlog_drain`` inserts a large backlog server-side while an idle worker waits, times its drain
from the commit, samples ``n_dead_tup`` and the claim statement's EXPLAIN (ANALYZE, BUFFERS) in a
rolled-back transaction (it takes row locks for a moment, then releases them: nothing is claimed).
``small_backlog_drain`` does the same in rounds of a small backlog, for comparison.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgsched.errors import ConfigurationError
from pgsched.queries import query

__all__ = ["BacklogResult", "backlog_drain", "explain_claim", "insert_ceiling", "small_backlog_drain"]

CEILING_QUEUE = "bench_ceiling"


def insert_ceiling(dsn: str, n: int) -> float:
    """Jobs/s of one server-side INSERT ... SELECT of n rows (committed), in a queue no worker serves."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(query("bench_insert_series"), {"queue": CEILING_QUEUE, "n": n})
        elapsed = time.perf_counter() - started
        conn.execute(query("bench_delete_queue"), {"queue": CEILING_QUEUE})
        conn.execute("VACUUM pgsched.jobs")
    return n / elapsed


def explain_claim(conn: psycopg.Connection[Any], queue: str, limit: int) -> dict[str, Any]:
    """The claim statement's plan (JSON) with execution time and shared buffers, rolled back.

    Called inside the transaction that inserted the backlog (a savepoint): a running worker never
    sees the rows locked or released by it, so it is not left waiting for a notification.
    """
    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(query("job_claim_batch"))
    params = {"queues": [queue], "limit": limit, "worker_id": None, "now": None}
    with conn.transaction(force_rollback=True):
        row = conn.execute(statement, params).fetchone()
    plan = (row[0] if row else [{}])[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    top = plan.get("Plan", {})
    return {
        "execution_ms": float(plan.get("Execution Time", 0.0)),
        "planning_ms": float(plan.get("Planning Time", 0.0)),
        "shared_hit": int(top.get("Shared Hit Blocks", 0)),
        "shared_read": int(top.get("Shared Read Blocks", 0)),
        "rows": int(top.get("Actual Rows", 0)),
        "plan": plan,
    }


@dataclass
class BacklogResult:
    jobs_per_s: float
    dead_samples: list[tuple[float, int, int]] = field(default_factory=list)
    explains: list[dict[str, Any]] = field(default_factory=list)


def _sample_dead(dsn: str, stop: threading.Event, out: list[tuple[float, int, int]], started: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(query("bench_dead_tuples")).fetchone()
            if row:
                out.append((round(time.perf_counter() - started, 2), int(row[0]), int(row[1])))
            stop.wait(0.5)


def _wait_drained(conn: psycopg.Connection[Any], queue: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute(query("bench_pending"), {"queue": queue}).fetchone() == (True,):
        if time.monotonic() > deadline:
            raise ConfigurationError("the backlog did not drain in time")
        time.sleep(0.01)


def backlog_drain(dsn: str, conn: psycopg.Connection[Any], queue: str, n: int, claim_limit: int) -> BacklogResult:
    """Insert n jobs server-side (an idle worker waits on ``queue``) and time the drain from the commit."""
    started = time.perf_counter()
    result = BacklogResult(0.0)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_dead, args=(dsn, stop, result.dead_samples, started), daemon=True)
    sampler.start()
    try:
        result.explains.append(_insert_explained(conn, queue, n, claim_limit))
        committed = time.perf_counter()
        _wait_drained(conn, queue, timeout=max(120.0, n / 1_000))
        result.jobs_per_s = n / (time.perf_counter() - committed)
    finally:
        stop.set()
        sampler.join(5)
    return result


def _insert_explained(conn: psycopg.Connection[Any], queue: str, n: int, claim_limit: int) -> dict[str, Any]:
    """Insert n jobs server-side and EXPLAIN ANALYZE the claim over them before committing."""
    with conn.transaction():
        conn.execute(query("bench_insert_series"), {"queue": queue, "n": n})
        return explain_claim(conn, queue, claim_limit)


def small_backlog_drain(
    conn: psycopg.Connection[Any], queue: str, n: int, rounds: int, claim_limit: int
) -> tuple[float, dict[str, Any]]:
    """Jobs/s over ``rounds`` rounds of inserting n jobs server-side and draining them; the last claim plan."""
    total = 0.0
    explain: dict[str, Any] = {}
    for _ in range(rounds):
        explain = _insert_explained(conn, queue, n, claim_limit)
        committed = time.perf_counter()
        _wait_drained(conn, queue, timeout=120.0)
        total += time.perf_counter() - committed
    return n * rounds / total, explain
