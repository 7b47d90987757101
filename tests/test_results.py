"""Waiting on results (``Pgsched.result``) without a worker: cancels, timeouts, the recheck, bad input,
and which jobs the finish statement announces. The worker-driven cases are in tests/worker/test_results.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgsched import JobCancelled, JobNotFound, Pgsched, ResultTimeout, ValidationError
from pgsched.queries import query
from tests.support.factories import insert_jobs, result_waiters
from tests.worker.conftest import until

Conn = psycopg.Connection[dict[str, Any]]


async def test_cancelling_a_queued_job_raises_job_cancelled_in_its_waiter(app: Pgsched, conn: Conn) -> None:
    job_id = app.enqueue("noop")  # no worker: it stays queued
    waiting = asyncio.ensure_future(asyncio.to_thread(app.result, job_id, timeout=20, recheck=60))
    await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
    assert conn.execute("SELECT pgsched.cancel(%s)::text AS s", [job_id]).fetchone() == {"s": "cancelled"}
    with pytest.raises(JobCancelled) as cancelled:
        await waiting
    assert cancelled.value.job_id == job_id
    assert result_waiters(conn) == 0


def test_a_timeout_raises_a_timeout_error_and_leaves_no_waiter_row(app: Pgsched, conn: Conn) -> None:
    job_id = app.enqueue("noop")
    with pytest.raises(ResultTimeout) as timed_out:
        app.result(job_id, timeout=0.3, recheck=0.1)
    assert isinstance(timed_out.value, TimeoutError)
    assert (timed_out.value.job_id, timed_out.value.timeout) == (job_id, 0.3)
    assert result_waiters(conn) == 0


async def test_a_job_ended_by_a_statement_that_sends_no_notify_is_seen_by_the_recheck(app: Pgsched, conn: Conn) -> None:
    (job_id,) = insert_jobs(conn, 1, task="noop", state="running", attempt=1)
    waiting = asyncio.ensure_future(asyncio.to_thread(app.result, job_id, timeout=20, recheck=0.1))
    await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
    conn.execute(  # a plain UPDATE: no NOTIFY
        "UPDATE pgsched.jobs SET state = 'succeeded', result = %s WHERE id = %s", [Jsonb({"late": True}), job_id]
    )
    assert await waiting == {"late": True}
    assert result_waiters(conn) == 0


def test_an_unknown_job_raises_job_not_found(app: Pgsched, conn: Conn) -> None:
    with pytest.raises(JobNotFound):
        app.result(987654321, timeout=1)
    assert result_waiters(conn) == 0


@pytest.mark.parametrize("timeout", [0, -1, 3600.5, True, "10", None])
def test_a_bad_timeout_is_refused_before_anything_is_stored(app: Pgsched, conn: Conn, timeout: Any) -> None:
    with pytest.raises(ValidationError) as bad:
        app.result(1, timeout=timeout)
    assert bad.value.field == "timeout"
    assert result_waiters(conn) == 0


def test_a_bad_job_id_or_recheck_is_refused(app: Pgsched) -> None:
    with pytest.raises(ValidationError, match="job_id"):
        app.result(0)
    with pytest.raises(ValidationError, match="recheck"):
        app.result(1, recheck=0)


async def test_a_cancelled_async_wait_removes_its_waiter_row(async_app: Pgsched, conn: Conn) -> None:
    job_id = await async_app.enqueue_async("noop")
    waiting = asyncio.ensure_future(async_app.result_async(job_id, timeout=20, recheck=60))
    await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: result_waiters(conn) == 0, timeout=10)


def test_the_finish_statement_notifies_only_ended_jobs_that_have_a_waiter(dsn: str, conn: Conn) -> None:
    waited, unwaited, retried = insert_jobs(conn, 3, task="noop", state="running", attempt=1, max_attempts=3, lease=7)
    conn.execute("INSERT INTO pgsched.result_waiters (job_id, backend_pid) VALUES (%s, 1), (%s, 1)", [waited, retried])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_done")
        rows = conn.execute(
            query("job_finish_many"),
            {
                "ids": [waited, unwaited, retried],
                "leases": [7, 7, 7],
                "outcomes": ["succeeded", "succeeded", "failed"],
                "results": ['{"ok": 1}', '{"ok": 2}', None],
                "errors": [None, None, '{"error": "again"}'],
                "delays": [0.0, 0.0, 10.0],
                "finals": [False, False, False],
                "snooze_limits": [0, 0, 0],
                "now": None,
            },
        ).fetchall()
        conn.execute("NOTIFY pgsched_done, 'end'")  # same session, later commit: delivered after the others
        heard = []
        for notify in listener.notifies(timeout=10):
            heard.append(notify.payload)
            if notify.payload == "end":
                break
    assert sorted((r["id"], r["state"]) for r in rows) == [
        (waited, "succeeded"),
        (unwaited, "succeeded"),
        (retried, "queued"),
    ]
    assert heard == [str(waited), "end"]


async def test_waits_of_one_client_share_one_listening_session(app: Pgsched, conn: Conn) -> None:
    job_ids = [app.enqueue("noop", queue="nobody_listens") for _ in range(3)]
    waits = [asyncio.ensure_future(asyncio.to_thread(app.result, j, timeout=20, recheck=60)) for j in job_ids]
    await until(lambda: result_waiters(conn) == 3, timeout=10)
    sessions = conn.execute("SELECT DISTINCT backend_pid FROM pgsched.result_waiters").fetchall()
    assert len(sessions) == 1
    for job_id in job_ids:
        conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    for wait in waits:
        with pytest.raises(JobCancelled):
            await wait
    assert result_waiters(conn) == 0
    again = app.enqueue("noop", queue="nobody_listens")
    later = asyncio.ensure_future(asyncio.to_thread(app.result, again, timeout=20, recheck=60))
    await until(lambda: result_waiters(conn, again) == 1, timeout=10)
    assert conn.execute("SELECT DISTINCT backend_pid FROM pgsched.result_waiters").fetchall() == sessions
    conn.execute("SELECT pgsched.cancel(%s)", [again])
    with pytest.raises(JobCancelled):
        await later


async def test_a_wait_survives_the_loss_of_the_listening_session(async_app: Pgsched, conn: Conn) -> None:
    job_id = await async_app.enqueue_async("noop", queue="nobody_listens")
    waiting = asyncio.ensure_future(async_app.result_async(job_id, timeout=20, recheck=60))
    await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
    (old,) = conn.execute("SELECT backend_pid FROM pgsched.result_waiters").fetchall()
    conn.execute("SELECT pg_terminate_backend(%s)", [old["backend_pid"]])
    # The listener comes back under a new session and lists the job again; only NOTIFY can end the
    # wait before the 60 s recheck, so the cancel below must reach the new session.
    await until(
        lambda: (
            conn.execute(
                "SELECT count(*) AS n FROM pgsched.result_waiters w JOIN pg_stat_activity a ON a.pid = w.backend_pid"
            ).fetchone()["n"]
            == 1
        ),
        timeout=15,
    )
    conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    with pytest.raises(JobCancelled):
        await waiting
