"""Connection loss: the LISTEN connection and the liveness connection are killed; the worker recovers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import REGISTRY

from pgsched import Settings
from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


def succeeded(conn: Conn, job_id: int) -> bool:
    row = conn.execute("SELECT state::text FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    return row == {"state": "succeeded"}


def alive(conn: Conn, worker_id: int | None) -> bool:
    return conn.execute("SELECT alive FROM pgsched.cluster WHERE id = %s", [worker_id]).fetchone() == {"alive": True}


def liveness_backend(conn: Conn, worker_id: int | None) -> int | None:
    """The backend holding the worker's liveness lock in this database (pg_locks spans the cluster), if any."""
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid::bigint = pgsched.lock_namespace() AND objid::bigint = %s",
        [worker_id],
    ).fetchone()
    return None if row is None else int(row["pid"])


async def test_a_killed_listener_reconnects_and_notify_wakeups_recover(
    start_worker: StartWorker, settings: Settings, conn: Conn
) -> None:
    # With a 60 s poll, only a NOTIFY (or the catch-up after reconnecting) can start these jobs quickly.
    worker = await start_worker(settings.with_(poll_seconds=60.0))
    reconnects = REGISTRY.get_sample_value("pgsched_listener_reconnects_total") or 0.0
    old = worker.listener_pid
    conn.execute("SELECT pg_terminate_backend(%s)", [old])
    (during,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: succeeded(conn, during), timeout=15, message="job enqueued while the listener was down")
    await until(lambda: worker.listener_pid not in (None, old), timeout=15, message="listener did not reconnect")
    assert (REGISTRY.get_sample_value("pgsched_listener_reconnects_total") or 0.0) > reconnects
    for _ in range(3):
        (after,) = insert_jobs(conn, 1, task="noop")
        await until(lambda: succeeded(conn, after), timeout=15, message="no NOTIFY wakeup after reconnecting")  # noqa: B023


async def test_a_killed_liveness_connection_is_reestablished_and_jobs_run_again(
    start_worker: StartWorker, conn: Conn
) -> None:
    worker = await start_worker()
    holder = liveness_backend(conn, worker.worker_id)
    assert holder is not None
    conn.execute("SELECT pg_terminate_backend(%s)", [holder])
    await until(lambda: alive(conn, worker.worker_id), timeout=15, message="liveness lock not re-taken")
    (job_id,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: succeeded(conn, job_id), timeout=15)


async def test_a_worker_whose_row_was_deleted_registers_again(start_worker: StartWorker, conn: Conn) -> None:
    worker = await start_worker()
    first = worker.worker_id
    conn.execute("DELETE FROM pgsched.workers WHERE id = %s", [first])
    await until(lambda: worker.worker_id != first and alive(conn, worker.worker_id), timeout=15)
    (job_id,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: succeeded(conn, job_id), timeout=15)
    row = conn.execute("SELECT worker_id FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"worker_id": worker.worker_id}


async def test_a_broken_worker_link_makes_liveness_look_at_once_not_a_heartbeat_later(
    start_worker: StartWorker, settings: Settings, conn: Conn
) -> None:
    """As after a database crash: every worker session is gone. The first claim that fails tells liveness (or
    its own connection, readable once its session ended, does), and it takes its lock again long before the next
    (60 s) heartbeat. A claim link still opening at the kill survives it and tells nothing: under load that
    left liveness to its heartbeat (a CI failure, before liveness watched its own connection)."""
    worker = await start_worker(settings.with_(heartbeat_seconds=60.0, lease_seconds=300.0))
    before = liveness_backend(conn, worker.worker_id)
    assert before is not None
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        [f"pgsched:worker:{os.getpid()}"],
    )
    # The listener's reconnect (or the NOTIFY of this insert) wakes the producer: its claim finds the link dead.
    # Liveness then takes its lock again on a new session, long before its 60 s heartbeat. (Not "wait until it
    # looks dead first": that gap can close before anyone looks.)
    (job_id,) = insert_jobs(conn, 1, task="noop")
    await until(
        lambda: (now := liveness_backend(conn, worker.worker_id)) is not None and now != before,
        timeout=15,
        message="liveness waited for its heartbeat",
    )
    assert alive(conn, worker.worker_id)
    await until(lambda: succeeded(conn, job_id), timeout=15)


async def test_liveness_notices_its_own_session_ended_when_no_other_connection_breaks(
    start_worker: StartWorker, settings: Settings, conn: Conn
) -> None:
    """Only the liveness session is terminated: its lock is free (the reaper would call the worker dead) and no
    claim fails to tell it, yet it takes its lock again on a new session long before its 60 s heartbeat."""
    worker = await start_worker(settings.with_(heartbeat_seconds=60.0, lease_seconds=300.0))
    before = liveness_backend(conn, worker.worker_id)
    assert before is not None
    conn.execute("SELECT pg_terminate_backend(%s)", [before])
    await until(
        lambda: (now := liveness_backend(conn, worker.worker_id)) is not None and now != before,
        timeout=15,
        message="liveness waited for its heartbeat",
    )
    assert alive(conn, worker.worker_id)
    assert worker._store.reconnects == 0  # no other link broke: liveness saw it by itself


# What a database crash does to a claim whose commit it lost (synchronous_commit is off): the row is as before it.
_LOSE_CLAIM = (
    "UPDATE pgsched.jobs SET state = 'queued', attempt = attempt - 1, worker_id = NULL, started_at = NULL, lease = NULL"
    " WHERE id = %s AND state = 'running'"
)


def state_of(conn: Conn, job_id: int) -> dict[str, Any] | None:
    return conn.execute("SELECT state::text, worker_id FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()


async def test_a_buffered_job_whose_claim_a_crash_lost_is_not_started_after_the_reconnect(
    start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    """One slot, busy; a second job claimed into the buffer loses its claim (its row reset, as after a crash that lost
    the commit), then every worker session ends. Once liveness is back and the slot frees, the stale copy must not
    start: the job, queued again, runs once, on a claim of its own (before: twice, the stale copy fenced out)."""
    worker = await start_worker(concurrency=1, prefetch_max=1)
    gate = tmp_path / "gate"
    (busy,) = insert_jobs(conn, 1, task="gated", args={"gate": str(gate)})
    await until(lambda: state_of(conn, busy) == {"state": "running", "worker_id": worker.worker_id}, timeout=15)
    (job_id,) = insert_jobs(conn, 1, task="record", args={"directory": str(tmp_path)})
    await until(lambda: state_of(conn, job_id) == {"state": "running", "worker_id": worker.worker_id}, timeout=15)
    assert conn.execute(_LOSE_CLAIM, [job_id]).rowcount == 1
    before = liveness_backend(conn, worker.worker_id)
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        [f"pgsched:worker:{os.getpid()}"],
    )
    await until(
        lambda: (now := liveness_backend(conn, worker.worker_id)) is not None and now != before,
        timeout=15,
        message="liveness did not come back",
    )
    gate.touch()  # the slot frees while liveness is back: a stale buffered copy would start now
    await until(lambda: succeeded(conn, busy) and succeeded(conn, job_id), timeout=15)
    runs = [line for log in tmp_path.glob("*.log") for line in log.read_text().split()]
    assert runs == [str(job_id)]
