"""Probes of `pgsched bench` that need a listener: enqueue->start and ->result(), the cost of NOTIFY.

Interface-side tool. ``start_latency``: a warm worker process waits on an idle queue; jobs are
enqueued one at a time and each returns the wall-clock time it started. ``notify_rates``:
single-row enqueues from N clients with notifications off, adaptive with nobody waiting, and
with a worker registered as waiting on the queue (every insert then sends a NOTIFY).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pgsched.app import Pgsched
from pgsched.bench.enqueue import percentiles
from pgsched.bench.workers import QUEUE, wait_until_drained, wait_until_waiting, worker_processes
from pgsched.client import Client
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.job import NewJob
from pgsched.queries import query

__all__ = ["notify_rates", "returned", "start_latency"]


def start_latency(dsn: str, samples: int, concurrency: int) -> dict[str, float]:
    """p50/p99 ms from the enqueue call's return to the task's start, on an idle listening worker."""
    app = Pgsched(settings=Settings(dsn=dsn))
    committed_at: dict[int, float] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, worker_processes(dsn, 1, concurrency=concurrency) as procs:
            wait_until_waiting(conn, procs)
            for _ in range(samples):
                job_id, returned_at = returned(lambda: app.enqueue("stamp", queue=QUEUE))
                committed_at[job_id] = returned_at
                time.sleep(0.01)  # the worker goes idle again: this measures an idle queue
            wait_until_drained(conn, procs, timeout=60.0)
            rows = conn.execute(query("bench_results"), {"queue": QUEUE, "task": "stamp"}).fetchall()
            waits = _result_waits(app, samples)
    finally:
        app.close()
    latencies = [(float(result) - committed_at[job_id]) * 1000 for job_id, result in rows]
    if len(latencies) < 2:
        raise ConfigurationError("the latency probes produced no results")
    p50, p99 = percentiles(latencies)
    wait_p50, wait_p99 = percentiles(waits)
    return {"latency.start_p50_ms": p50, "latency.start_p99_ms": p99,
            "latency.result_p50_ms": wait_p50, "latency.result_p99_ms": wait_p99}  # fmt: skip


def returned(enqueue: Callable[[], int]) -> tuple[int, float]:
    """The id an enqueue call gave and the wall-clock time it returned. (Not ``stamps[enqueue()] = time.time()``:
    Python evaluates the right side of an assignment before the subscript, so that stamp is taken before the call,
    and the probe then measured from the call, not from its return.)"""
    job_id = enqueue()
    return job_id, time.time()


def _result_waits(app: Pgsched, samples: int) -> list[float]:
    """Ms from enqueueing a no-op job to ``result()`` returning, one at a time (LISTEN, waiter row, NOTIFY)."""
    waits = []
    for _ in range(samples):
        started = time.perf_counter()
        app.result(app.enqueue("noop", queue=QUEUE), timeout=30)
        waits.append((time.perf_counter() - started) * 1000)
    return waits


def notify_rates(dsn: str, clients: int, seconds: float) -> dict[str, float]:
    """Single-row enqueues/s from ``clients`` connections: NOTIFY off, adaptive, a worker waiting."""
    return asyncio.run(_notify_rates(dsn, clients, seconds))


async def _notify_rates(dsn: str, clients: int, seconds: float) -> dict[str, float]:
    out = {"notify.off_per_s": await _insert_loop(dsn, clients, seconds, notify_off=True)}
    out["notify.adaptive_per_s"] = await _insert_loop(dsn, clients, seconds, notify_off=False)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        # A waiting worker (its row and mark; nothing claims) makes every insert NOTIFY.
        params = {
            "role": "worker",
            "host": "bench",
            "pid": 0,
            "queues": [QUEUE],
            "concurrency": 0,
            "version": None,
            "heartbeat_lease": None,
        }
        row = await (await conn.execute(query("worker_register"), params)).fetchone()
        if row is None:
            raise ConfigurationError("could not register the waiting worker")
        await conn.execute(query("worker_wait_mark"), {"worker_id": row[0], "queues": [QUEUE]})
        out["notify.waiting_per_s"] = await _insert_loop(dsn, clients, seconds, notify_off=False)
        await conn.execute(query("worker_unregister"), {"id": row[0]})
        await conn.execute(query("bench_delete_queue"), {"queue": QUEUE})
    return out


async def _insert_loop(dsn: str, clients: int, seconds: float, *, notify_off: bool) -> float:
    client = Client(Settings(dsn=dsn))  # every call below brings its own connection: no pool opens
    job = NewJob.build("noop", queue=QUEUE)
    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(clients)]
    try:
        for conn in conns:
            if notify_off:
                await conn.execute(query("bench_notify_off"))
            await client.insert_async(job, conn=conn)  # warm up
        stop_at = time.perf_counter() + seconds
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
