"""The measurements of `pgsched bench`, each on a fresh database cloned from a migrated template.

Interface-side tool, never imported by the worker. One run: start a real `pgsched worker` process
(concurrency C) and wait until it is idle and listening; COPY N no-op jobs (enqueue jobs/s); time
the drain from the commit until no job is queued or running (drain jobs/s, worker and Postgres
CPU per job); probe enqueue->start latency on the idle queue, and enqueue->``result()`` for no-op
jobs (a waiter woken by NOTIFY pgsched_done); stop the worker; then time
single-row enqueues from 16 clients with notifications off, adaptive (nobody waiting) and always
(a worker waiting on the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgsched.app import Pgsched
from pgsched.bench.backlog import backlog_drain, insert_ceiling, small_backlog_drain
from pgsched.bench.facts import machine_busy_ticks, process_cpu_seconds
from pgsched.client import Client
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.job import NewJob
from pgsched.migrate import Migrator
from pgsched.queries import query

__all__ = ["BenchOptions", "Database", "run_once"]

QUEUE = "bench"


@dataclass(frozen=True)
class BenchOptions:
    dsn: str
    runs: int = 3
    jobs: int = 20_000
    concurrency: int = 10
    latency_samples: int = 200
    clients: int = 16
    enqueue_seconds: float = 3.0
    best_concurrency: int = 100
    backlog: int = 200_000
    small_backlog: int = 2_000


@dataclass
class Database:
    """A template database migrated once, and a fresh clone of it per run; all dropped at the end."""

    admin_dsn: str
    prefix: str = field(default_factory=lambda: f"pgsched_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    created: list[str] = field(default_factory=list)

    def dsn(self, name: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=name)

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.clear()


def server_facts(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(query("bench_server_facts")).fetchone()
        return dict(row or {})


# ---------------------------------------------------------------- the worker process
@contextlib.contextmanager
def worker_process(dsn: str, concurrency: int) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "pgsched", "--dsn", dsn, "--log-level", "WARNING", "worker",
            "--app", "pgsched.bench.tasks:app", "--queues", QUEUE, "--concurrency", str(concurrency),
            "--no-scheduler", "--grace", "5"]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_idle_worker(conn: psycopg.Connection[Any], proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigurationError(f"the bench worker exited with status {proc.returncode}")
        row = conn.execute(query("bench_worker_waiting"), {"queue": QUEUE, "pid": proc.pid}).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise ConfigurationError("the bench worker did not become idle in time")


@dataclass
class _Cpu:
    worker: float
    backends: float
    busy: tuple[int, int] | None

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], pid: int) -> _Cpu:
        pids = [r[0] for r in conn.execute(query("bench_backend_pids"), {"pid": pid}).fetchall()]
        backends = sum(process_cpu_seconds(p) or 0.0 for p in pids)
        return cls(process_cpu_seconds(pid) or 0.0, backends, machine_busy_ticks())


# ---------------------------------------------------------------- one run
def run_once(
    options: BenchOptions, database: Database, template: str, index: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """One run of every figure; returns the figures and the run's backlog details (plans, dead tuples)."""
    name = database.create(f"run{index}", template)
    dsn = database.dsn(name)
    figures: dict[str, float] = {}
    details: dict[str, Any] = {}
    app = Pgsched(settings=Settings(dsn=dsn))
    try:
        figures["insert_select_ceiling_per_s"] = insert_ceiling(dsn, options.jobs)
        with psycopg.connect(dsn, autocommit=True) as conn, worker_process(dsn, options.concurrency) as proc:
            _wait_idle_worker(conn, proc)
            figures |= _drain(options, app, conn, proc)
            _wait_idle_worker(conn, proc)
            figures |= _latency(options, app, conn)
            _wait_idle_worker(conn, proc)
            figures |= _result_wait(options, app)
        figures |= asyncio.run(_single_row_enqueue(options, dsn))
        with psycopg.connect(dsn, autocommit=True) as conn:  # the single-row inserts are not for draining
            conn.execute(query("bench_delete_queue"), {"queue": QUEUE})
            conn.execute("VACUUM pgsched.jobs")
        figures |= _best_and_backlog(options, app, dsn, details)
    finally:
        app.close()
    return figures, details


def _best_and_backlog(options: BenchOptions, app: Pgsched, dsn: str, details: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn, worker_process(dsn, options.best_concurrency) as proc:
        _wait_idle_worker(conn, proc)
        best = _drain(options, app, conn, proc)
        out["drain_best_jobs_per_s"] = best["drain_jobs_per_s"]
        out["worker_cpu_ms_per_job_best"] = best["worker_cpu_ms_per_job"]
        out["postgres_cpu_ms_per_job_best"] = best["postgres_cpu_ms_per_job"]
        _wait_idle_worker(conn, proc)
        out["drain_small_backlog_per_s"], small = small_backlog_drain(conn, QUEUE, options.small_backlog, 10, 250)
        _wait_idle_worker(conn, proc)
        large = backlog_drain(dsn, conn, QUEUE, options.backlog, claim_limit=250)
    out["drain_large_backlog_per_s"] = large.jobs_per_s
    out["claim_ms_small_backlog"] = small["execution_ms"]
    out["claim_ms_large_backlog"] = large.explains[0]["execution_ms"]
    out["max_dead_tuples"] = float(max((d for _, _, d in large.dead_samples), default=0))
    details["dead_tuples"] = large.dead_samples
    details["claim_explains"] = large.explains
    return out


def _drain(
    options: BenchOptions, app: Pgsched, conn: psycopg.Connection[Any], proc: subprocess.Popen[bytes]
) -> dict[str, float]:
    items = [{"task": "noop", "queue": QUEUE} for _ in range(options.jobs)]
    done_before = dict(conn.execute(query("bench_state_counts"), {"queue": QUEUE}).fetchall()).get("succeeded", 0)
    before = _Cpu.read(conn, proc.pid)
    started = time.perf_counter()
    app.enqueue_many(items)
    committed = time.perf_counter()
    while conn.execute(query("bench_pending"), {"queue": QUEUE}).fetchone() == (True,):
        time.sleep(0.005)
    drained = time.perf_counter()
    after = _Cpu.read(conn, proc.pid)
    counts = dict(conn.execute(query("bench_state_counts"), {"queue": QUEUE}).fetchall())
    if counts.get("succeeded", 0) - done_before != options.jobs:
        raise ConfigurationError(f"drain check failed: {counts}")
    n = options.jobs
    out = {
        "enqueue_many_jobs_per_s": n / (committed - started),
        "drain_jobs_per_s": n / (drained - committed),
        "worker_cpu_ms_per_job": (after.worker - before.worker) * 1000 / n,
        "postgres_cpu_ms_per_job": (after.backends - before.backends) * 1000 / n,
    }
    if before.busy and after.busy:
        busy, total = after.busy[0] - before.busy[0], after.busy[1] - before.busy[1]
        out["machine_busy_pct"] = 100.0 * busy / total if total else 0.0
    return out


def _latency(options: BenchOptions, app: Pgsched, conn: psycopg.Connection[Any]) -> dict[str, float]:
    committed_at: dict[int, float] = {}
    for _ in range(options.latency_samples):
        job_id = app.enqueue("stamp", queue=QUEUE)
        committed_at[job_id] = time.time()
        time.sleep(0.01)  # let the worker go idle again: this measures an idle queue
    deadline = time.monotonic() + 30
    while conn.execute(query("bench_pending"), {"queue": QUEUE}).fetchone() == (True,):
        if time.monotonic() > deadline:
            raise ConfigurationError("latency probes did not finish in time")
        time.sleep(0.01)
    rows = conn.execute(query("bench_results"), {"queue": QUEUE, "task": "stamp"}).fetchall()
    samples = sorted((float(result) - committed_at[job_id]) * 1000 for job_id, result in rows)
    if len(samples) < 2:
        raise ConfigurationError("latency probes produced no results")
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"latency_p50_ms": cuts[49], "latency_p95_ms": cuts[94], "latency_p99_ms": cuts[98]}


def _result_wait(options: BenchOptions, app: Pgsched) -> dict[str, float]:
    """Enqueue a no-op job and wait on ``result()``, one at a time: the round trip a caller sees
    (its own connection, LISTEN, waiter row, NOTIFY from the finish statement)."""
    samples = []
    for _ in range(options.latency_samples):
        started = time.perf_counter()
        app.result(app.enqueue("noop", queue=QUEUE), timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"result_wait_p50_ms": cuts[49], "result_wait_p99_ms": cuts[98]}


async def _single_row_enqueue(options: BenchOptions, dsn: str) -> dict[str, float]:
    out = {"enqueue_1row_notify_off_per_s": await _insert_loop(options, dsn, notify_off=True)}
    out["enqueue_1row_adaptive_per_s"] = await _insert_loop(options, dsn, notify_off=False)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        # A waiting worker (only its row and mark: nothing claims) makes every insert NOTIFY.
        row = await (
            await conn.execute(
                query("worker_register"),
                {"role": "worker", "host": "bench", "pid": 0, "queues": [QUEUE], "concurrency": 0, "version": None},
            )
        ).fetchone()
        assert row is not None
        await conn.execute(query("worker_wait_mark"), {"worker_id": row[0], "queues": [QUEUE]})
        out["enqueue_1row_notify_always_per_s"] = await _insert_loop(options, dsn, notify_off=False)
        await conn.execute(query("worker_unregister"), {"id": row[0]})
    return out


async def _insert_loop(options: BenchOptions, dsn: str, *, notify_off: bool) -> float:
    client = Client(Settings(dsn=dsn))  # every call below brings its own connection: no pool opens
    job = NewJob.build("noop", queue=QUEUE)
    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(options.clients)]
    try:
        for conn in conns:
            if notify_off:
                await conn.execute(query("bench_notify_off"))
            await client.insert_async(job, conn=conn)  # warm up
        stop_at = time.perf_counter() + options.enqueue_seconds
        started = time.perf_counter()

        async def one_client(conn: psycopg.AsyncConnection[Any]) -> int:
            done = 0
            while time.perf_counter() < stop_at:
                await client.insert_async(job, conn=conn)
                done += 1
            return done

        total = sum(await asyncio.gather(*(one_client(c) for c in conns)))
        return total / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


def prepare_template(database: Database) -> str:
    name = database.create("tmpl")
    Migrator(database.dsn(name)).migrate()
    return name


def admin_dsn(dsn: str) -> str:
    """The same server, database ``postgres`` (to create and drop the bench databases)."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = "postgres"
    return make_conninfo(**params)  # type: ignore[arg-type]
