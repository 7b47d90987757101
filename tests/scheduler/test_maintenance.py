"""Reaper and pruner: real worker processes SIGKILLed mid-job, poison pills, retention."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Settings
from pgsched.maintenance import Pruner, Reaper
from pgsched.scheduler import Scheduler
from tests.support.factories import insert_jobs
from tests.support.waiting import await_until, wait_until

FAST = {
    "heartbeat_seconds": 0.5,
    "lease_seconds": 3.0,
    "reaper_interval_seconds": 0.3,
    "election_interval_seconds": 0.2,
}


def state(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT state::text AS state, attempt, errors FROM pgsched.jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert row is not None
    return dict(row)


async def test_a_killed_workers_job_is_requeued_within_seconds_and_completes(
    dsn: str, conn: psycopg.Connection[Any], spawn_worker: Callable[..., Any]
) -> None:
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 1.5})
    victim = spawn_worker()
    await asyncio.to_thread(wait_until, lambda: state(conn, job_id)["state"] == "running", timeout=20)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    scheduler = Scheduler(Settings(dsn=dsn, **FAST))
    leader = asyncio.create_task(scheduler.run())
    try:
        await await_until(lambda: _async(state(conn, job_id)["state"] != "running"), timeout=15)
        recovered = time.monotonic() - killed_at
        after = state(conn, job_id)
        assert after["state"] == "queued"
        assert after["errors"][-1]["kind"] == "worker_lost"
        spawn_worker()
        await asyncio.to_thread(wait_until, lambda: state(conn, job_id)["state"] == "succeeded", timeout=20)
        print(f"\nkilled worker's job re-queued after {recovered:.2f} s")
    finally:
        scheduler.stop()
        await asyncio.wait_for(leader, 15)
    assert state(conn, job_id)["attempt"] == 2


def started(conn: psycopg.Connection[Any], job_id: int) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n FROM pgsched.jobs j JOIN pgsched.workers w ON w.id = j.worker_id"
        " WHERE j.id = %s AND j.state = 'running' AND j.id = ANY (w.started)",
        [job_id],
    ).fetchone()
    return bool(row and row["n"])


async def _async(value: bool) -> bool:
    return value


async def test_a_job_that_kills_its_worker_three_times_goes_dead(
    dsn: str, conn: psycopg.Connection[Any], spawn_worker: Callable[..., Any]
) -> None:
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 30}, max_attempts=10)
    reaper = Reaper(Settings(dsn=dsn, **FAST))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        for loss in range(1, 4):
            victim = spawn_worker()
            # Started, not only claimed: a loss is charged only to a job its worker had published as started.
            await asyncio.to_thread(wait_until, lambda: started(conn, job_id), timeout=20)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)

            async def reaped() -> bool:
                await reaper.reap(leader)
                return state(conn, job_id)["state"] != "running"

            await await_until(reaped, timeout=15, interval=0.2)
            expected = "dead" if loss == 3 else "queued"
            assert state(conn, job_id)["state"] == expected
    final = state(conn, job_id)
    assert [e["kind"] for e in final["errors"]] == ["worker_lost"] * 3
    dead = conn.execute("SELECT count(*) AS n FROM pgsched.dead_letter WHERE id = %s", [job_id]).fetchone()
    assert dead == {"n": 1}


async def test_pruner_deletes_only_finished_jobs_past_their_retention(dsn: str, conn: psycopg.Connection[Any]) -> None:
    old = "now() - interval '2 days'"
    recent = "now() - interval '1 hour'"
    conn.execute(
        f"""INSERT INTO pgsched.jobs (task, state, finished_at)
            SELECT 't', s::pgsched.job_state, f FROM (VALUES
              ('succeeded', {old}), ('succeeded', {recent}), ('cancelled', {old}), ('dead', {old}),
              ('queued', NULL)) AS v(s, f), generate_series(1, 1500)"""
    )
    pruner = Pruner(Settings(dsn=dsn, retention_succeeded_seconds=86400, retention_cancelled_seconds=7 * 86400))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        deleted = await pruner.prune(leader)
    assert deleted == 1500
    left = conn.execute("SELECT state::text AS s, count(*) AS n FROM pgsched.jobs GROUP BY 1 ORDER BY 1").fetchall()
    assert left == [
        {"s": "cancelled", "n": 1500},
        {"s": "dead", "n": 1500},
        {"s": "queued", "n": 1500},
        {"s": "succeeded", "n": 1500},
    ]


async def test_a_lost_job_whose_cancel_was_pending_ends_cancelled_not_requeued(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    (job_id,) = insert_jobs(conn, 1, state="running", attempt=1, worker_id=424242)  # no such worker
    conn.execute("UPDATE pgsched.jobs SET cancel_requested_at = now() WHERE id = %s", [job_id])
    (other,) = insert_jobs(conn, 1, state="running", attempt=1, worker_id=424242)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        reaped = await Reaper(Settings(dsn=dsn, **FAST)).reap(leader)
    assert {job_id: "cancelled", other: "queued"} == {k: str(v) for k, v in reaped.items()}
    assert state(conn, job_id)["errors"][-1]["kind"] == "worker_lost"


async def test_pruner_deletes_result_waiters_whose_session_is_gone(dsn: str, conn: psycopg.Connection[Any]) -> None:
    live = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert live is not None
    gone = conn.execute(
        "SELECT max(pid) + 100000 AS pid FROM pg_stat_activity"  # no such session
    ).fetchone()
    assert gone is not None
    conn.execute(
        "INSERT INTO pgsched.result_waiters (job_id, backend_pid) VALUES (1, %s), (2, %s), (3, %s)",
        [live["pid"], gone["pid"], gone["pid"]],
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        assert await Pruner(Settings(dsn=dsn)).prune(leader) == 0  # no finished jobs; the waiters go too
    rows = conn.execute("SELECT job_id, backend_pid FROM pgsched.result_waiters").fetchall()
    assert rows == [{"job_id": 1, "backend_pid": live["pid"]}]


async def test_a_lost_job_that_goes_dead_notifies_its_result_waiter(dsn: str, conn: psycopg.Connection[Any]) -> None:
    (job_id,) = insert_jobs(conn, 1, state="running", attempt=1, max_attempts=1, worker_id=424242)  # no such worker
    (requeued,) = insert_jobs(conn, 1, state="running", attempt=1, max_attempts=3, worker_id=424242)
    conn.execute("INSERT INTO pgsched.result_waiters (job_id, backend_pid) VALUES (%s, 1), (%s, 1)", [job_id, requeued])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_done")
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
            reaped = await Reaper(Settings(dsn=dsn, **FAST)).reap(leader)
            await leader.execute("NOTIFY pgsched_done, 'end'")  # a later commit: delivered after the reaper's
        heard = []
        for notify in listener.notifies(timeout=10):
            heard.append(notify.payload)
            if notify.payload == "end":
                break
    assert {k: str(v) for k, v in reaped.items()} == {job_id: "dead", requeued: "queued"}
    assert heard == [str(job_id), "end"]
