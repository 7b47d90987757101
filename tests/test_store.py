"""The job stores against a real PostgreSQL: claiming, fencing and failing through the statements the
worker runs (``WorkerStore``: job_claim_batch, job_finish_many, job_release_leased), bulk insert and
listing through ``AsyncJobStore``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgsched import DatabaseUnavailable, db
from pgsched.clock import FixedClock
from pgsched.job import NewJob
from pgsched.job_row import JobState
from pgsched.operator_store import OperatorStore
from pgsched.store import AsyncJobStore
from pgsched.worker_store import ClaimedJob, Finished, Outcome, WorkerStore
from tests.support.factories import insert_jobs
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture(autouse=True)
def workers(conn: Conn) -> None:
    """Workers 1 to 8 are registered: only a registered worker claims."""
    conn.execute(
        "INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE"
        " SELECT g, 'test', g FROM generate_series(1, 8) g"
    )


@pytest.fixture
async def store_pool(dsn: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = db.async_pool(dsn, "test", min_size=1, max_size=10)
    await pool.open()
    yield pool
    await pool.close()


@pytest.fixture
def store(store_pool: AsyncConnectionPool) -> AsyncJobStore:
    return AsyncJobStore(store_pool)


@pytest.fixture
def operator(store_pool: AsyncConnectionPool) -> OperatorStore:
    return OperatorStore(store_pool)


@pytest.fixture
async def worker_store(dsn: str) -> AsyncIterator[Callable[..., WorkerStore]]:
    """``worker_store(clock=...)``: a worker's store (its own two connections); all closed at teardown."""
    opened: list[WorkerStore] = []

    def make(**options: Any) -> WorkerStore:
        opened.append(WorkerStore(dsn, **options))
        return opened[-1]

    yield make
    for each in opened:
        await each.close()


@pytest.fixture
def claims(worker_store: Callable[..., WorkerStore]) -> WorkerStore:
    return worker_store()


def succeeded(job: ClaimedJob, result: str) -> Finished:
    return Finished(job.id, job.attempt, job.lease, Outcome.SUCCEEDED, result=result)


def failed(job: ClaimedJob, error: str, *, delay: float = 0.0) -> Finished:
    entry = {"attempt": job.attempt, "error": error}
    return Finished(job.id, job.attempt, job.lease, Outcome.FAILED, error=entry, delay=delay)


async def test_concurrent_claimers_get_disjoint_sets_covering_every_due_job_once(
    worker_store: Callable[..., WorkerStore], conn: Conn
) -> None:
    due = set(insert_jobs(conn, 2000))
    insert_jobs(conn, 100, run_at=datetime.now(UTC) + timedelta(hours=1))  # not due: never claimed

    async def claimer(worker_id: int) -> list[int]:
        own = worker_store()
        got: list[int] = []
        while True:
            batch = await own.job_claim_batch(["default"], 37, worker_id)
            assert len(batch) <= 37
            if not batch:
                return got
            got.extend(j.id for j in batch)

    results = await asyncio.gather(*(claimer(w) for w in range(1, 9)))
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == due
    assert sum(1 for r in results if r) > 1, "only one claimer ever got work"


async def test_claim_respects_priority_then_run_at_then_id(claims: WorkerStore, conn: Conn) -> None:
    now = datetime.now(UTC)
    low_old = insert_jobs(conn, 1, priority=0, run_at=now - timedelta(minutes=5))[0]
    high_new = insert_jobs(conn, 1, priority=10, run_at=now - timedelta(seconds=1))[0]
    high_old = insert_jobs(conn, 1, priority=10, run_at=now - timedelta(minutes=1))[0]
    low_new_a, low_new_b = insert_jobs(conn, 2, priority=0, run_at=now - timedelta(seconds=2))
    order = [job.id for _ in range(5) for job in await claims.job_claim_batch(["default"], 1, 1)]
    assert order == [high_old, high_new, low_old, low_new_a, low_new_b]


async def test_claim_only_takes_the_listed_queues_and_due_jobs(
    worker_store: Callable[..., WorkerStore], conn: Conn
) -> None:
    clock = FixedClock(datetime.now(UTC))
    pinned = worker_store(clock=clock)
    insert_jobs(conn, 3, queue="other")
    later = insert_jobs(conn, 2, run_at=clock.now() + timedelta(minutes=10))
    assert await pinned.job_claim_batch(["default"], 10, 1) == []
    clock.advance(timedelta(minutes=11))
    assert sorted(j.id for j in await pinned.job_claim_batch(["default"], 10, 1)) == later


async def test_fenced_completion_ignores_a_stale_attempt(store: AsyncJobStore, claims: WorkerStore, conn: Conn) -> None:
    insert_jobs(conn, 1)
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    # The reaper re-queued it and another worker claimed attempt 2.
    conn.execute("UPDATE pgsched.jobs SET state = 'queued' WHERE id = %s", [job.id])
    (again,) = await claims.job_claim_batch(["default"], 1, 2)
    assert again.attempt == job.attempt + 1
    assert await claims.job_finish_many([succeeded(job, '{"late": true}')]) == {}
    assert await claims.job_finish_many([failed(job, "late")]) == {}
    assert await claims.job_finish_many([succeeded(again, '{"ok": 1}')]) == {again.id: "succeeded"}
    # A duplicate completion of the same attempt changes nothing either.
    assert await claims.job_finish_many([succeeded(again, '{"ok": 2}')]) == {}
    final = await store.job_get(job.id)
    assert final is not None
    assert (final.state, final.result, final.errors) == (JobState.SUCCEEDED, {"ok": 1}, [])


async def test_failures_back_off_then_go_dead_with_every_error_kept(claims: WorkerStore, conn: Conn) -> None:
    insert_jobs(conn, 1, max_attempts=2)
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    assert await claims.job_finish_many([failed(job, "boom 1")]) == {job.id: "queued"}
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    assert job.attempt == 2
    assert await claims.job_finish_many([failed(job, "boom 2", delay=5.0)]) == {job.id: "dead"}
    dead = conn.execute("SELECT id, last_error, errors, finished_at IS NOT NULL AS ended FROM pgsched.dead_letter")
    assert [(d["id"], d["last_error"], len(d["errors"]), d["ended"]) for d in dead] == [(job.id, "boom 2", 2, True)]


async def test_a_final_failure_goes_dead_with_attempts_left(claims: WorkerStore, conn: Conn) -> None:
    insert_jobs(conn, 1, max_attempts=5)
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    final = Finished(job.id, job.attempt, job.lease, Outcome.FAILED, error={"error": "no retry"}, final=True)
    assert await claims.job_finish_many([final]) == {job.id: "dead"}
    row = conn.execute("SELECT attempt, finished_at IS NOT NULL AS ended FROM pgsched.jobs").fetchone()
    assert row == {"attempt": 1, "ended": True}


async def test_a_retry_waits_for_its_backoff(claims: WorkerStore, conn: Conn) -> None:
    insert_jobs(conn, 1)
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    assert await claims.job_finish_many([failed(job, "x", delay=60.0)]) == {job.id: "queued"}
    assert await claims.job_claim_batch(["default"], 1, 1) == []
    row = conn.execute(
        "SELECT run_at - now() > interval '50 seconds' AS later, finished_at IS NULL AS open FROM pgsched.jobs"
    ).fetchone()
    assert row == {"later": True, "open": True}


async def test_release_hands_a_job_back_without_charging_an_attempt(
    store: AsyncJobStore, claims: WorkerStore, conn: Conn
) -> None:
    insert_jobs(conn, 1)
    (job,) = await claims.job_claim_batch(["default"], 1, 1)
    assert await claims.job_release_leased([(job.id, job.lease)]) == {job.id}
    back = await store.job_get(job.id)
    assert back is not None
    assert (back.state, back.attempt, back.worker_id) == (JobState.QUEUED, 0, None)


async def test_insert_many_copies_jobs_and_returns_ids_in_order(store: AsyncJobStore) -> None:
    jobs = [NewJob.build("bulk", {"i": i}, priority=i % 3) for i in range(1000)]
    ids = await store.job_insert_many(jobs)
    assert len(ids) == len(set(ids)) == 1000
    for probe in (0, 500, 999):
        job = await store.job_get(ids[probe])
        assert job is not None
        assert job.args == {"i": probe}


async def test_insert_many_with_run_keys_returns_existing_ids_for_taken_keys(
    store: AsyncJobStore, operator: OperatorStore
) -> None:
    (first,) = await store.job_insert_many([NewJob.build("k", run_key="a")])
    ids = await store.job_insert_many(
        [
            NewJob.build("k", run_key="a"),
            NewJob.build("k"),
            NewJob.build("k", run_key="b"),
            NewJob.build("k", run_key="b"),
        ]
    )
    assert ids[0] == first
    assert ids[2] == ids[3] != ids[1]
    assert len(await operator.job_list(limit=100)) == 3


async def test_job_list_pages_by_keyset(operator: OperatorStore, conn: Conn) -> None:
    ids = insert_jobs(conn, 25)
    seen: list[int] = []
    before: int | None = None
    while True:
        page = await operator.job_list(limit=10, before_id=before)
        if not page:
            break
        seen.extend(j.id for j in page)
        before = page[-1].id
    assert seen == sorted(ids, reverse=True)


async def test_claim_honours_pause_and_limits(claims: WorkerStore, conn: Conn) -> None:
    insert_jobs(conn, 5)
    conn.execute("SELECT pgsched.pause_queue('default')")
    assert await claims.job_claim_batch(["default"], 10, 1) == []
    conn.execute("UPDATE pgsched.queues SET paused = false, concurrency = 2 WHERE name = 'default'")
    assert len(await claims.job_claim_batch(["default"], 10, 1)) == 2
    assert await claims.job_claim_batch(["default"], 10, 1) == []  # two running: the limit is full
    keyed = insert_jobs(conn, 3, queue="keyed", concurrency_key="k")
    assert [j.id for j in await claims.job_claim_batch(["keyed"], 10, 1)] == keyed[:1]


def _kill_backend(conn: psycopg.Connection[dict[str, Any]], pid: int) -> None:
    conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(
        lambda: conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == {"n": 0}
    )


async def test_a_run_keyed_enqueue_whose_connection_died_unseen_is_tried_once_more_and_a_keyless_one_is_not(
    dsn: str, conn: Conn
) -> None:
    """What a database restart does to a pooled connection the pool's check did not look at: the statement fails."""
    pool = AsyncConnectionPool(
        db.conninfo(dsn, "test"), min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open()  # no check at checkout: the dead connection is handed out
    store = AsyncJobStore(pool)
    try:
        for expected_new in (True, False):  # the second time the key is taken: the same job comes back
            async with pool.connection() as c:
                pid = c.info.backend_pid
            _kill_backend(conn, pid)
            inserted = await store.job_insert(NewJob.build("t", {}, run_key="restart-safe"))
            assert inserted.created is expected_new
        async with pool.connection() as c:
            pid = c.info.backend_pid
        _kill_backend(conn, pid)
        with pytest.raises(DatabaseUnavailable):  # it may have committed: only the caller may decide to try again
            await store.job_insert(NewJob.build("t", {}))
    finally:
        await pool.close()
    rows = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE task = 't'").fetchone()
    assert rows == {"n": 1}
