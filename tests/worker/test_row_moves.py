"""pgsched.jobs is partitioned by state: a change of state moves the row (DELETE + INSERT), and a statement that
then locks or updates the old version gets SQLSTATE 40001 ("tuple to be locked was already moved to another
partition due to concurrent update"). The claim, the finish and the admin paths run such a statement again
(pgsched.db.execute_moving): never an error to the caller, never a lost or stuck job.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgsched import db
from pgsched.errors import InvalidStateError
from pgsched.store import JobStore
from pgsched.worker_store import Finished, Outcome, WorkerStore
from tests.support.factories import insert_jobs
from tests.support.waiting import wait_until


def _someone_waits_for_a_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    return row is not None and row[0] > 0


def _while_waiting(dsn: str, hold: Any, run: Any) -> Any:
    """Run ``run(conn)`` (on that connection, or on its own) while another transaction, opened by ``hold(conn)``,
    holds what ``run`` needs; that transaction commits once ``run`` waits for its lock."""
    with (
        psycopg.connect(dsn) as holder,
        psycopg.connect(dsn, autocommit=True) as runner,
        psycopg.connect(
            dsn,
            autocommit=True,  # pg_stat_activity is read once per transaction
        ) as watch,
    ):
        hold(holder)  # a transaction is open
        outcome: dict[str, Any] = {}

        def go() -> None:
            try:
                outcome["value"] = run(runner)
            except Exception as exc:  # handed to the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=go)
        thread.start()
        wait_until(lambda: _someone_waits_for_a_lock(watch), timeout=10)
        holder.commit()
        thread.join(10)
        assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _moving_under(dsn: str, job_id: int, change: str, run: Any) -> Any:
    """``run`` while another transaction moves the job with ``change`` (an UPDATE of its state): the case of 40001."""
    return _while_waiting(dsn, lambda mover: mover.execute(change, [job_id]), run)


def _running_job(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (7, 'test', 7)")
    (job_id,) = insert_jobs(conn, 1, state="running", attempt=1, worker_id=7, lease=4242, started_at=None)
    return job_id, 4242


_CANCEL_RUNNING = "UPDATE pgsched.jobs SET state = 'cancelled', finished_at = now() WHERE id = %s"
_FINISH = "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now(), lease = NULL WHERE id = %s"


def test_a_plain_statement_on_a_row_moved_under_it_fails_with_40001(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """The case is real: without the retry the finish fails."""
    job_id, _ = _running_job(conn)
    with pytest.raises(psycopg.errors.SerializationFailure, match="moved to another partition"):
        _moving_under(
            dsn,
            job_id,
            _CANCEL_RUNNING,
            lambda c: c.execute("UPDATE pgsched.jobs SET lease = 1 WHERE id = %s", [job_id]),
        )


def test_the_finish_of_a_job_moved_under_it_is_retried_and_its_fence_then_refuses(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    job_id, lease = _running_job(conn)
    finished = Finished(job_id, 1, lease, Outcome.SUCCEEDED, result="1")

    def finish(_: psycopg.Connection[Any]) -> dict[int, str]:
        async def run() -> dict[int, str]:
            store = WorkerStore(dsn)
            try:
                return await store.job_finish_many([finished])
            finally:
                await store.close()

        return asyncio.run(run())

    accepted = _moving_under(dsn, job_id, _CANCEL_RUNNING, finish)
    assert accepted == {}  # the fence: the job ended cancelled meanwhile; nothing overwritten
    row = conn.execute("SELECT state::text AS state FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"state": "cancelled"}


def test_a_cancel_racing_the_finish_that_moved_the_job_says_it_already_finished(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    job_id, _ = _running_job(conn)
    with ConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        store = JobStore(pool)
        with pytest.raises(InvalidStateError, match="already finished"):
            _moving_under(dsn, job_id, _FINISH, lambda _: store.job_cancel(job_id))


def test_execute_moving_retries_the_statement_and_returns_its_rows(dsn: str, conn: psycopg.Connection[Any]) -> None:
    job_id, _ = _running_job(conn)
    rows = _moving_under(
        dsn,
        job_id,
        _FINISH,
        lambda c: db.execute_moving(
            c, "UPDATE pgsched.jobs SET priority = 5 WHERE id = %s RETURNING state::text", [job_id]
        ).fetchall(),
    )
    assert rows == [("succeeded",)]  # run again, it found the row where it is now


async def test_claims_finishes_and_cancels_racing_lose_and_strand_nothing(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """Workers claim and finish while an admin cancels queued and running jobs at random: no statement fails, and
    every job ends succeeded or cancelled (none lost, none left queued or running)."""
    ids = insert_jobs(conn, 400)
    conn.execute(
        "INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE"
        " SELECT g, 'test', g FROM generate_series(1, 4) g"
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def cancel() -> None:
        with ConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
            store = JobStore(pool)
            rng = random.Random(7)
            while not stop.is_set():
                try:
                    store.job_cancel(rng.choice(ids))
                except InvalidStateError:
                    pass  # already finished: the answer for a job that ended
                except BaseException as exc:
                    errors.append(exc)
                    return

    async def work(worker_id: int) -> None:
        store = WorkerStore(dsn)
        try:
            while True:
                jobs = await store.job_claim_batch(["default"], 10, worker_id)
                if not jobs:
                    return
                await store.job_finish_many([Finished(j.id, j.attempt, j.lease, Outcome.SUCCEEDED, "1") for j in jobs])
        finally:
            await store.close()

    cancellers = [threading.Thread(target=cancel) for _ in range(2)]
    for t in cancellers:
        t.start()
    try:
        await asyncio.gather(*(work(w) for w in range(1, 5)))
    finally:
        stop.set()
        for t in cancellers:
            t.join(10)
    assert not errors
    # A cancel of a running job only asks its worker: those finished succeeded here.
    left = conn.execute("SELECT state::text AS state, count(*) AS n FROM pgsched.jobs GROUP BY 1 ORDER BY 1").fetchall()
    assert {r["state"] for r in left} <= {"succeeded", "cancelled"}, left
    assert sum(r["n"] for r in left) == len(ids)


def _attaching_under(dsn: str, purge_at_sql: str, run: Any) -> Any:
    """``run`` while the leader's transaction attaches the time partition that the row ``run`` moves into jobs_done
    belongs in (``purge_at_sql`` says where it will fall): the statement routed the row by the partitions it saw when
    it began (to the default partition), which no longer takes that range once the attach commits."""
    return _while_waiting(
        dsn,
        lambda leader: leader.execute(
            "SELECT pgsched.history_partition_create(date_trunc('day', p), date_trunc('day', p) + interval '1 day')"
            f" FROM (SELECT {purge_at_sql} AS p) x"
        ),
        run,
    )


_SUCCEEDED_KEEP = "now() + (SELECT keep FROM pgsched.retention WHERE queue = '*' AND state = 'succeeded')"


def test_a_finish_racing_the_attach_of_its_time_partition_is_retried(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """A fresh cluster's first leader round attaches partitions for the ranges finished jobs land in right now."""
    job_id, lease = _running_job(conn)
    finished = Finished(job_id, 1, lease, Outcome.SUCCEEDED, result="1")

    def finish(_: psycopg.Connection[Any]) -> dict[int, str]:
        async def run() -> dict[int, str]:
            store = WorkerStore(dsn)
            try:
                return await store.job_finish_many([finished])
            finally:
                await store.close()

        return asyncio.run(run())

    assert _attaching_under(dsn, _SUCCEEDED_KEEP, finish) == {job_id: "succeeded"}
    row = conn.execute("SELECT tableoid::regclass::text AS part FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None and row["part"] != "pgsched.jobs_done_default"


def test_a_transactional_finish_racing_the_attach_keeps_the_tasks_own_writes(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """The finish of a transactional task runs in the task's transaction: the retry must not lose what it wrote."""
    job_id, lease = _running_job(conn)
    conn.execute("CREATE TABLE task_writes (job_id bigint)")
    finished = Finished(job_id, 1, lease, Outcome.SUCCEEDED, result="1")

    def finish(_: psycopg.Connection[Any]) -> bool:
        async def run() -> bool:
            store = WorkerStore(dsn)
            try:
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO task_writes VALUES (%s)", [job_id])
                    return await store.job_finish_in(tx, finished)
            finally:
                await store.close()

        return asyncio.run(run())

    assert _attaching_under(dsn, _SUCCEEDED_KEEP, finish) is True
    assert conn.execute("SELECT count(*) AS n FROM task_writes").fetchone() == {"n": 1}
    row = conn.execute("SELECT state::text AS state FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"state": "succeeded"}
