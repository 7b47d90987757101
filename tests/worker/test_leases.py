"""Claims carry a lease of their own: fenced writes, fair blame for lost workers, reconciliation, retry spread."""

from __future__ import annotations

import collections
import random
from typing import Any

import psycopg

from pgsched import RetryPolicy, Settings
from pgsched.maintenance import Reaper
from pgsched.worker_store import Finished, Outcome, WorkerStore
from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[Any]


def register(conn: Conn) -> int:
    row = conn.execute("INSERT INTO pgsched.workers (host, pid) VALUES ('test', 1) RETURNING id").fetchone()
    assert row is not None
    return int(row["id"])


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT state::text AS state, attempt, returns, run_at, lease, errors FROM pgsched.jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert row is not None
    return dict(row)


async def test_a_worker_whose_row_is_gone_claims_nothing_until_it_registers_again(dsn: str, conn: Conn) -> None:
    insert_jobs(conn, 3)
    store = WorkerStore(dsn)
    try:
        assert await store.job_claim_batch(["default"], 10, 424242) == []
        assert len(await store.job_claim_batch(["default"], 10, register(conn))) == 3
    finally:
        await store.close()


async def test_a_claim_that_takes_nothing_writes_nothing_unless_its_started_list_changed(dsn: str, conn: Conn) -> None:
    # An idle worker's polls must not cost a transaction id and a WAL flush each: the worker row is rewritten only
    # when the published list of started jobs changes, or when jobs are taken.
    worker = register(conn)

    def version() -> tuple[Any, Any]:
        row = conn.execute("SELECT xmin::text AS xmin, started FROM pgsched.workers WHERE id = %s", [worker]).fetchone()
        assert row is not None
        return row["xmin"], row["started"]

    store = WorkerStore(dsn)
    try:
        (taken,) = insert_jobs(conn, 1)
        assert [j.id for j in await store.job_claim_batch(["default"], 10, worker, free=1)] == [taken]
        published = version()
        assert published[1] == [taken]
        for _ in range(3):
            assert await store.job_claim_batch(["default"], 10, worker, running=[taken]) == []
            assert version() == published  # the same row version: nothing written
        assert await store.job_claim_batch(["default"], 10, worker, running=[]) == []
        assert version()[1] == []  # a changed list is still published
    finally:
        await store.close()


async def test_two_copies_of_one_attempt_never_both_write(dsn: str, conn: Conn) -> None:
    (job_id,) = insert_jobs(conn, 1)
    worker = register(conn)
    store = WorkerStore(dsn)
    try:
        (first,) = await store.job_claim_batch(["default"], 1, worker)
        # A database crash loses the claim's commit: the row is queued again at the same attempt.
        conn.execute("UPDATE pgsched.jobs SET state = 'queued', attempt = 0, lease = NULL WHERE id = %s", [job_id])
        (second,) = await store.job_claim_batch(["default"], 1, worker)
        assert (second.id, second.attempt) == (first.id, first.attempt) and second.lease != first.lease
        late = Finished(first.id, first.attempt, first.lease, Outcome.SUCCEEDED, result='"first"')
        assert await store.job_finish_many([late]) == {}
        assert await store.job_cancel_requested([(first.id, first.lease)]) == []
        assert await store.job_release_leased([(first.id, first.lease)]) == set()
        own = Finished(second.id, second.attempt, second.lease, Outcome.SUCCEEDED, result='"second"')
        assert await store.job_finish_many([own]) == {job_id: "succeeded"}
        assert await store.job_finish_many([own]) == {}  # the lease went with the finish
    finally:
        await store.close()
    row = conn.execute("SELECT result FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"result": "second"}


async def test_a_lost_worker_is_charged_only_for_started_jobs_and_the_rest_go_back_uncharged_in_place(
    dsn: str, conn: Conn, settings: Settings
) -> None:
    ids = insert_jobs(conn, 5)
    before = {i: job(conn, i)["run_at"] for i in ids}
    worker = register(conn)
    store = WorkerStore(dsn)
    try:
        claimed = await store.job_claim_batch(["default"], 5, worker, free=2)  # two fill free slots at once
    finally:
        await store.close()
    started = {j.id for j in claimed if j.started}
    assert len(started) == 2 and [j.started for j in claimed] == [True, True, False, False, False]
    conn.execute(  # the worker died: its heartbeat goes stale
        "UPDATE pgsched.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", [worker]
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as leader:
        reaped = await Reaper(settings).reap(leader)
    assert set(reaped) == set(ids)
    for i in ids:
        row = job(conn, i)
        assert row["state"] == "queued" and row["lease"] is None
        assert row["run_at"] == before[i], "a rescued job keeps its place in line"
        if i in started:
            assert (row["attempt"], row["returns"], [e["kind"] for e in row["errors"]]) == (1, 0, ["worker_lost"])
        else:
            assert (row["attempt"], row["returns"], row["errors"]) == (0, 1, [])


async def test_a_job_handed_back_uncharged_as_often_as_the_loss_limit_is_charged_next_time(
    dsn: str, conn: Conn, settings: Settings
) -> None:
    """A poison pill whose start was never published is still caught: returns are capped."""
    lost_before = [{"kind": "worker_lost", "error": "worker lost"}] * (settings.max_worker_losses - 2)
    (job_id,) = insert_jobs(conn, 1, returns=settings.max_worker_losses, errors=lost_before)
    worker = register(conn)
    store = WorkerStore(dsn)
    try:
        (claimed,) = await store.job_claim_batch(["default"], 1, worker)
    finally:
        await store.close()
    assert not claimed.started
    conn.execute("UPDATE pgsched.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", [worker])
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as leader:
        await Reaper(settings).reap(leader)
    row = job(conn, job_id)
    assert (row["attempt"], [e["kind"] for e in row["errors"]]) == (
        1,
        ["worker_lost"] * (settings.max_worker_losses - 1),
    )
    store = WorkerStore(dsn)
    try:
        (again,) = await store.job_claim_batch(["default"], 1, register(conn), free=1)
    finally:
        await store.close()
    assert again.isolate and not again.started, "one loss short of the limit: it runs alone, publishing its own start"


async def test_a_running_row_under_the_workers_id_that_it_does_not_hold_goes_back_and_runs(
    conn: Conn, start_worker: StartWorker
) -> None:
    """What a database crash leaves when it loses a completion: the worker reconciles within a few heartbeats."""
    worker = await start_worker(concurrency=2)
    (job_id,) = insert_jobs(conn, 1, state="running", attempt=1, worker_id=worker.worker_id, lease=12345)
    await until(lambda: job(conn, job_id)["state"] == "succeeded", timeout=20, message="the stray row never ran")
    assert job(conn, job_id)["attempt"] == 1  # handed back uncharged, then run once


def test_a_cohort_of_500_failing_together_retries_at_most_3x_its_mean_rate_and_never_early() -> None:
    policy, rng = RetryPolicy(), random.Random(17)
    starts: list[float] = []
    for _ in range(500):
        at, attempt = 0.0, 1
        while at < 30.0 and attempt < 8:  # failing for 30 s, 8 attempts at most
            delay = policy.delay(attempt, rng)
            assert delay >= policy.floor(attempt)
            at, attempt = at + delay, attempt + 1
            starts.append(at)
    storm = [s for s in starts if s < 30.0]
    per_second = collections.Counter(int(s) for s in storm)
    mean = len(storm) / (30 - min(per_second))
    assert max(per_second.values()) <= 3 * mean, (max(per_second.values()), mean)
    assert RetryPolicy(jitter=0.0).delay(3, rng) == 4.0
