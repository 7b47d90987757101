"""Waiting on results (``Pgsched.result``) of jobs a real in-process worker runs; woken by NOTIFY."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched import JobCancelled, JobFailed, JobNotFound, Pgsched, ResultTimeout
from pgsched.result_store import EARLY_REREADS
from tests.support.factories import result_waiters
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


async def test_result_returns_what_the_task_returned_once_a_worker_ran_it(
    app: Pgsched, start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker()
    job_id = app.enqueue("echo", {"x": [1, "two"], "y": None})
    assert await asyncio.to_thread(app.result, job_id, timeout=20) == {"x": [1, "two"], "y": None}
    assert await asyncio.to_thread(app.result, job_id, timeout=1) == {"x": [1, "two"], "y": None}  # ended already
    assert result_waiters(conn) == 0


async def test_result_is_woken_by_the_finish_notify_not_by_the_recheck(
    app: Pgsched, start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    await start_worker()
    gate = tmp_path / "gate"
    job_id = app.enqueue("gated", {"gate": str(gate), "value": 42})
    # The row is re-read only every 60 s and the wait gives up after 20 s: only NOTIFY can end it.
    waiting = asyncio.ensure_future(asyncio.to_thread(app.result, job_id, timeout=20, recheck=60))
    await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
    await asyncio.sleep(EARLY_REREADS[-1] + 0.1)  # past the early re-reads too
    gate.touch()
    assert await waiting == 42
    assert result_waiters(conn) == 0


async def test_a_job_that_ends_without_a_notify_for_a_new_wait_is_seen_by_an_early_reread(
    app: Pgsched, conn: Conn, dsn: str
) -> None:
    job_id = app.enqueue("noop")  # no worker: it stays queued
    with psycopg.connect(dsn) as ender:
        # Ended in a transaction that began before the wait was listed: it sends no NOTIFY for the wait, and the
        # wait's first read cannot see the end yet. Re-reads every 60 s, a 30 s timeout: an early re-read must see it.
        ender.execute("SELECT pgsched.cancel(%s)", [job_id])
        waiting = asyncio.ensure_future(asyncio.to_thread(app.result, job_id, timeout=30, recheck=60))
        await until(lambda: result_waiters(conn, job_id) == 1, timeout=10)
        ender.commit()
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(waiting, 10)
    assert result_waiters(conn) == 0


async def test_a_dead_job_raises_job_failed_with_its_last_error(
    app: Pgsched, start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker()
    job_id = app.enqueue("fail_always", {"message": "kaput"}, max_attempts=2)
    with pytest.raises(JobFailed) as failed:
        await asyncio.to_thread(app.result, job_id, timeout=20, recheck=60)
    assert (failed.value.job_id, failed.value.error) == (job_id, "RuntimeError: kaput")
    assert failed.value.details["attempt"] == 2 and "Traceback" in failed.value.details["traceback"]
    assert result_waiters(conn) == 0


async def test_result_async_returns_the_result_and_raises_like_the_sync_one(
    async_app: Pgsched, start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker()
    job_id = await async_app.enqueue_async("echo", {"hello": "world"})
    assert await async_app.result_async(job_id, timeout=20, recheck=60) == {"hello": "world"}
    failing = await async_app.enqueue_async("fail_always", {"message": "async kaput"}, max_attempts=1)
    with pytest.raises(JobFailed, match="async kaput"):
        await async_app.result_async(failing, timeout=20, recheck=60)
    with pytest.raises(JobNotFound):
        await async_app.result_async(987654321, timeout=1)
    queued = await async_app.enqueue_async("noop", queue="nobody_listens")
    with pytest.raises(ResultTimeout):
        await async_app.result_async(queued, timeout=0.2, recheck=0.05)
    assert result_waiters(conn) == 0
