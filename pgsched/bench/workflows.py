"""Workflow figures of `pgsched bench workflows`: creation cost, chain drain, plain drain with and without 0012.

Interface-side tool. Three comparisons, each made inside one run so that machine noise hits both sides:
- creating a 1,000-job fan-out with its callback (one ``app.group(...).then(...)``) against
  ``enqueue_many`` of 1,000 jobs, alternated, median of ``rounds`` each (wall clock of the call);
- a workflow of n two-step chains (2n jobs) drained by fresh workers against 2n plain jobs;
- plain jobs drained on the full schema against a clone stripped of what workflows add to ``pgsched.jobs``
  (migration 0012's columns and index, and the triggers of 0023/0028): the cost plain jobs pay for workflows.
  Both clones record every migration, so the workers start on either.
Drains are timed by the database (first ``started_at`` to last ``finished_at``), as ``bench.drain``.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pgsched.app import Pgsched
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE, wait_until_drained, wait_until_started, worker_processes
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.queries import query
from pgsched.workflow import Dag, Step, group

__all__ = ["DRAIN_KINDS", "creation_cost", "drain_rate"]

DRAIN_KINDS = ("plain", "chains", "plain-without-0012")

# Utility statements cannot be PREPAREd, so they are not named queries. The strip is the bench's
# "before" side only (a scratch clone), never a migration.
_VACUUM = "VACUUM pgsched.jobs, pgsched.job_dependencies, pgsched.workflows"
_CHECKPOINT = "CHECKPOINT"
_STRIP_0012 = (
    "DROP TRIGGER jobs_advance_dependents ON pgsched.jobs",
    "DROP TRIGGER jobs_xnote_dependents ON pgsched.jobs",
    "DROP TRIGGER jobs_forget_dependencies ON pgsched.jobs",
    "DROP VIEW pgsched.workflow_steps, pgsched.workflow_status",
    "DROP INDEX pgsched.jobs_workflow_idx",
    "ALTER TABLE pgsched.jobs DROP COLUMN workflow_id, DROP COLUMN has_dependents",
)
_serial = itertools.count()


def _noop() -> Step:
    return Step("noop", {}, {"queue": QUEUE})


def _empty(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_delete_queue"), {"queue": QUEUE})
        conn.execute(query("bench_workflows_delete"))
        conn.execute(_VACUUM)


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def creation_cost(dsn: str, *, n: int = 1_000, rounds: int = 15) -> dict[str, float]:
    """Median ms of creating an n-job fan-out with a callback, and of enqueue_many of n jobs, alternated."""
    app = Pgsched(settings=Settings(dsn=dsn))
    items = [{"task": "noop", "queue": QUEUE} for _ in range(n)]

    def fan_out() -> None:
        group(*[_noop() for _ in range(n)], starter=app.client).then(_noop()).enqueue()

    try:
        fan_out()  # warm the pool and the statements of both paths
        app.enqueue_many(items)
        _empty(dsn)
        plain, flow = [], []
        for _ in range(rounds):
            plain.append(_timed(lambda: app.enqueue_many(items)))
            _empty(dsn)
            flow.append(_timed(fan_out))
            _empty(dsn)
    finally:
        app.close()
    p, f = statistics.median(plain), statistics.median(flow)
    return {"create.enqueue_many_ms": p, "create.fan_out_ms": f, "create.ratio": f / p}


def _load(dsn: str, kind: str, jobs: int) -> None:
    if kind == "chains":
        app = Pgsched(settings=Settings(dsn=dsn))
        try:
            dag = Dag("bench", starter=app.client)
            for _ in range(jobs // 2):
                dag.add(_noop(), after=[dag.add(_noop())])
            dag.enqueue()
        finally:
            app.close()
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        if kind == "plain-without-0012":
            for statement in _STRIP_0012:
                conn.execute(statement)
        conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": jobs})


def drain_rate(databases: Databases, kind: str, *, jobs: int, processes: int = 1, concurrency: int = 10) -> float:
    """Jobs/s of fresh workers draining ``jobs`` jobs of ``kind`` (plain, chains: jobs/2 two-step chains,
    plain-without-0012) on a fresh clone, timed by the database."""
    if kind not in DRAIN_KINDS:
        raise ConfigurationError(f"unknown drain kind {kind!r}")
    dsn = databases.clone(f"flow{next(_serial)}")
    try:
        _load(dsn, kind, jobs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(_CHECKPOINT)
            with worker_processes(dsn, processes, concurrency=concurrency) as procs:
                wait_until_started(conn, procs)
                wait_until_drained(conn, procs, timeout=max(300.0, jobs / 100))
            row = conn.execute(query("bench_drain_window"), {"queue": QUEUE}).fetchone()
            done, seconds = (int(row[0]), float(row[1])) if row else (0, 0.0)
            if done != jobs or seconds <= 0:
                counts: dict[str, int] = dict(conn.execute(query("bench_state_counts"), {"queue": QUEUE}).fetchall())
                raise ConfigurationError(f"drain check failed: {counts}")
            return jobs / seconds
    finally:
        databases.drop(dsn)
