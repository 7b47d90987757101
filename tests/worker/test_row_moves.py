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
from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.errors import InvalidStateError
from pgsched.operator_store import JobChanges, OperatorStore
from pgsched.queries import query
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


async def _operator(dsn: str, use: Any) -> Any:
    """``use(store)`` on an OperatorStore over a pool of its own (as the API's)."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        return await use(OperatorStore(pool))


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
    with pytest.raises(InvalidStateError, match="already finished"):
        _moving_under(dsn, job_id, _FINISH, lambda _: asyncio.run(_operator(dsn, lambda s: s.job_cancel(job_id))))


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

    async def cancel_at_random(store: OperatorStore) -> None:
        rng = random.Random(7)
        while not stop.is_set():
            try:
                await store.job_cancel(rng.choice(ids))
            except InvalidStateError:
                pass  # already finished: the answer for a job that ended
            except BaseException as exc:
                errors.append(exc)
                return

    def cancel() -> None:
        asyncio.run(_operator(dsn, cancel_at_random))

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


# Migration 0046: running jobs have a partition of their own, so the claim moves a job too (jobs_queued ->
# jobs_running), and a retry or a reaped job moves back.
_CLAIM = {"queues": ["default"], "limit": 10, "worker_id": 1, "now": None, "running": [], "free": 10}


def _worker(conn: psycopg.Connection[Any], worker_id: int = 1) -> None:
    conn.execute(
        "INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (%s, 'test', %s)",
        [worker_id, worker_id],
    )


def _claiming(holder: psycopg.Connection[Any]) -> None:
    """Claim (and so move) the queued jobs in a transaction left open."""
    assert holder.execute(query("job_claim_batch"), _CLAIM).fetchall()


def _state(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT state::text AS s FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row["s"])


def test_a_drained_job_leaves_one_dead_row_in_each_live_partition(conn: psycopg.Connection[Any]) -> None:
    """The claim scans jobs_queued only: a drained job leaves one dead row there (the claim's move) and one in
    jobs_running (the finish's), where jobs_live had two (the claim's update and the finish's move)."""
    _worker(conn)
    insert_jobs(conn, 50)
    with conn.transaction():  # the transaction's own counters: pg_stat_xact_user_tables
        claimed = conn.execute(query("job_claim_batch"), {**_CLAIM, "limit": 50, "free": 50}).fetchall()
        assert len(claimed) == 50
        done = conn.execute(
            query("job_finish_many"),
            {
                "ids": [j["id"] for j in claimed],
                "leases": [j["lease"] for j in claimed],
                "outcomes": ["succeeded"] * 50,
                "results": ["1"] * 50,
                "errors": [None] * 50,
                "delays": [0.0] * 50,
                "finals": [False] * 50,
                "snooze_limits": [0] * 50,
                "now": None,
            },
        ).fetchall()
        assert len(done) == 50
        dead = {
            r["relname"]: r["dead"]
            for r in conn.execute(
                "SELECT relname, n_tup_upd - n_tup_hot_upd + n_tup_del AS dead FROM pg_stat_xact_user_tables"
                " WHERE relname IN ('jobs_queued', 'jobs_running')"
            )
        }
    assert dead == {"jobs_queued": 50, "jobs_running": 50}


def test_a_sql_cancel_racing_the_claim_finds_the_job_running(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """pgsched.cancel() waits for the claim's lock, meets the moved row (40001) and judges the job again where it is
    now (pgsched.moved_again): running, so its worker is asked to stop it."""
    _worker(conn)
    (job_id,) = insert_jobs(conn, 1)
    answer = _while_waiting(
        dsn, _claiming, lambda c: c.execute("SELECT pgsched.cancel(%s)::text", [job_id]).fetchone()[0]
    )
    assert answer == "running"
    row = conn.execute(
        "SELECT state::text AS s, cancel_requested_at FROM pgsched.jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert row is not None and row["s"] == "running" and row["cancel_requested_at"] is not None


def test_a_workflow_step_added_while_its_dependency_is_claimed_waits_for_it(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    _worker(conn)
    (job_id,) = insert_jobs(conn, 1)
    step = _while_waiting(
        dsn,
        _claiming,
        lambda c: c.execute(
            "SELECT pgsched.workflow_add(NULL, 'b', depends_on => ARRAY[%s]::bigint[])", [job_id]
        ).fetchone()[0],
    )
    row = conn.execute("SELECT state::text AS s, deps_left FROM pgsched.jobs WHERE id = %s", [step]).fetchone()
    assert row == {"s": "waiting", "deps_left": 1}
    flagged = conn.execute("SELECT has_dependents FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert flagged == {"has_dependents": True}


async def test_a_change_racing_the_claim_says_the_job_is_running(dsn: str, conn: psycopg.Connection[Any]) -> None:
    _worker(conn)
    (job_id,) = insert_jobs(conn, 1)

    def change(_: psycopg.Connection[Any]) -> None:
        asyncio.run(_operator(dsn, lambda s: s.job_update(job_id, JobChanges(priority=5))))

    with pytest.raises(InvalidStateError, match="running"):
        _while_waiting(dsn, _claiming, change)


def test_an_enqueue_replacing_a_job_being_claimed_does_not_deadlock(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """The replacing enqueue locks the key, then the job; the claim's move fires the key trigger in jobs_running,
    which must not wait for the key (jobs_run_key_moving): else each waits for the other (DeadlockDetected)."""
    _worker(conn)
    job_id = conn.execute("SELECT pgsched.enqueue('t', run_key => 'sync:42', run_key_scope => 'active')").fetchone()
    assert job_id is not None
    with psycopg.connect(dsn) as enqueuer:
        enqueuer.execute("SELECT 1 FROM pgsched.run_keys WHERE run_key = 'sync:42' FOR UPDATE")  # as run_key_take
        with psycopg.connect(dsn, autocommit=True) as worker:
            claimed = {}
            thread = threading.Thread(
                target=lambda: claimed.update(rows=worker.execute(query("job_claim_batch"), _CLAIM).fetchall())
            )
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), "the claim waits for the run key"
        new = enqueuer.execute(
            "SELECT pgsched.enqueue('t', '{\"n\": 2}', run_key => 'sync:42', run_key_scope => 'active',"
            " on_conflict => 'replace')"
        ).fetchone()
        enqueuer.commit()
    assert [r[0] for r in claimed["rows"]] == [job_id["enqueue"]]
    assert new is not None and new[0] != job_id["enqueue"]  # the claimed job runs; a new one takes the key
    holder = conn.execute("SELECT job_id FROM pgsched.run_keys WHERE run_key = 'sync:42'").fetchone()
    assert holder == {"job_id": new[0]}


async def test_a_job_retried_after_its_key_was_given_away_is_queued_again(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """While a keyed job runs, a replacing enqueue gives its key to a new job; the running job then fails and is
    retried: it goes back to jobs_queued (an insert there) without taking the key back, and the finish succeeds."""
    _worker(conn)
    row = conn.execute("SELECT pgsched.enqueue('t', run_key => 'sync:7', run_key_scope => 'active') AS id").fetchone()
    assert row is not None
    store = WorkerStore(dsn)
    try:
        (job,) = await store.job_claim_batch(["default"], 10, 1)
        new = conn.execute(
            "SELECT pgsched.enqueue('t', run_key => 'sync:7', run_key_scope => 'active',"
            " on_conflict => 'replace') AS id"
        ).fetchone()
        assert new is not None and new["id"] != job.id
        accepted = await store.job_finish_many(
            [Finished(job.id, job.attempt, job.lease, Outcome.FAILED, error={"error": "x"})]
        )
    finally:
        await store.close()
    assert accepted == {job.id: "queued"}
    assert _state(conn, job.id) == "queued"
    holder = conn.execute("SELECT job_id FROM pgsched.run_keys WHERE run_key = 'sync:7'").fetchone()
    assert holder == {"job_id": new["id"]}


async def test_four_claimers_over_one_backlog_claim_each_job_once(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """Claims racing for the same rows: a claim whose snapshot saw a job another claim moved since meets 40001 and runs
    again (execute_moving); no job is claimed twice or left behind."""
    ids = insert_jobs(conn, 2000)
    for w in range(1, 5):
        _worker(conn, w)
    seen: list[int] = []

    async def claim(worker_id: int) -> None:
        store = WorkerStore(dsn)
        try:
            while jobs := await store.job_claim_batch(["default"], 25, worker_id):
                seen.extend(j.id for j in jobs)
        finally:
            await store.close()

    await asyncio.gather(*(claim(w) for w in range(1, 5)))
    assert sorted(seen) == sorted(ids)
    left = conn.execute("SELECT count(*) AS n FROM pgsched.jobs_running").fetchone()
    assert left == {"n": len(ids)}


async def test_tasks_sharing_a_link_each_run_their_statement_in_a_transaction_of_its_own(dsn: str) -> None:
    # The worker's links are autocommit connections that several tasks share (the completer's flushes, the
    # producer's hand-backs). A statement in flight there (ACTIVE), or another task's open transaction, is never
    # the caller's transaction: read as one, a task opened its own transaction (or a savepoint inside another
    # task's), so one task's statement committed or rolled back with another's, and two exits in the wrong order
    # raised OutOfOrderTransactionNesting out of the worker (a short PostgreSQL crash killed a worker so).
    sql = "SELECT pg_sleep(0.2), txid_current()::text AS txid"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as link:

        async def one(delay: float) -> str:
            await asyncio.sleep(delay)
            cur = await db.execute_moving_async(link, sql)
            row = await cur.fetchone()
            assert row is not None
            return str(row[1])

        txids = await asyncio.gather(one(0), one(0.05), one(0.1), one(0.3))
        assert link.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert len(set(txids)) == 4, txids  # four statements, four transactions
