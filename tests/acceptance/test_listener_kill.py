"""Scenario 6: the worker's LISTEN connection is terminated again and again under a steady stream
of enqueues. The listener reconnects and no job waits longer than the poll interval (plus margin)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, env_float, knob, live_workers, scalar
from tests.acceptance.ledger import emit, executions
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

SECONDS = env_float("PGSCHED_CHAOS_LISTENER_SECONDS", 10)
ENQUEUE_EVERY = 0.02
POLL = knob("PGSCHED_POLL_SECONDS")
# A job enqueued while the listener is down waits at most one poll; the margin is for a shared 2-core machine.
STALL_BOUND = POLL + 2.0


def listener_backend(conn: psycopg.Connection[Any], pid: int) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"pgsched:listener:{pid}"]
    ).fetchone()
    return None if row is None else int(row["pid"])


def _replaced(conn: psycopg.Connection[Any], pid: int, old: int) -> Callable[[], bool]:
    return lambda: listener_backend(conn, pid) not in (None, old)


def enqueue_stream(dsn: str, stop: threading.Event, ids: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('plain') RETURNING id").fetchone()
            assert row is not None
            ids.append(int(row[0]))
            stop.wait(ENQUEUE_EVERY)


def test_killing_the_listener_connection_under_load_never_stalls_jobs_past_the_poll_interval(
    cluster: Cluster, db: psycopg.Connection[Any]
) -> None:
    proc = cluster.worker("--no-scheduler", "--concurrency", "8")
    wait_until(lambda: live_workers(db) == 1, timeout=60, message="worker did not register")
    wait_until(lambda: listener_backend(db, proc.pid), timeout=30, message="no listener")
    ids: list[int] = []
    stop = threading.Event()
    enqueuer = threading.Thread(target=enqueue_stream, args=(cluster.dsn, stop, ids), daemon=True)
    enqueuer.start()
    terminations = 0
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            backend = wait_until(lambda: listener_backend(db, proc.pid) or 0, timeout=30, message="listener not back")
            db.execute("SELECT pg_terminate_backend(%s)", [backend])
            terminations += 1
            wait_until(_replaced(db, proc.pid, backend), timeout=30, message="the listener did not reconnect")
    finally:
        stop.set()
        enqueuer.join(10)
    wait_until(
        lambda: scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE state <> 'succeeded'") == 0,
        timeout=60,
        message="jobs not drained",
    )
    waits = db.execute(
        "SELECT extract(epoch FROM started_at - created_at)::float8 AS w FROM pgsched.jobs WHERE id = ANY(%s)",
        [ids],
    ).fetchall()
    worst = max(r["w"] for r in waits)
    counts = executions(db, ids, [])
    emit(
        "listener_kill",
        seconds=SECONDS,
        terminations=terminations,
        jobs=len(ids),
        max_wait_s=round(worst, 3),
        stall_bound_s=STALL_BOUND,
        worker_alive=proc.poll() is None,
        **counts,
    )
    assert terminations >= 3
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["unexpected"] == 0
    assert worst <= STALL_BOUND
    assert proc.poll() is None
