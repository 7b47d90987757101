"""The insert trigger sends NOTIFY only while some worker waits on the queue (migration 0002), once per
wake-up: it takes the marks it answers, and the woken worker marks again (migration 0018)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from pgsched import Settings
from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


def notified(listener: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=0.3, stop_after=1)]


def waiting_worker(conn: Conn, queue: str) -> int:
    row = conn.execute(
        "INSERT INTO pgsched.workers (host, pid, queues) VALUES ('test', 1, ARRAY[%s]) RETURNING id", [queue]
    ).fetchone()
    assert row is not None
    conn.execute("INSERT INTO pgsched.waiting_workers (queue, worker_id) VALUES (%s, %s)", [queue, row["id"]])
    return int(row["id"])


def test_no_notify_is_sent_while_no_worker_waits(dsn: str, conn: Conn) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        insert_jobs(conn, 3)
        assert notified(listener) == []


def test_a_waiting_worker_gets_one_notify_per_statement_for_its_queue_only(dsn: str, conn: Conn) -> None:
    waiting_worker(conn, "mail")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        insert_jobs(conn, 5, queue="other")
        assert notified(listener) == []
        insert_jobs(conn, 5, queue="mail")
        assert notified(listener) == ["mail"]


def test_deleting_the_worker_row_removes_its_waiting_marks(conn: Conn) -> None:
    worker_id = waiting_worker(conn, "default")
    conn.execute("DELETE FROM pgsched.workers WHERE id = %s", [worker_id])
    assert conn.execute("SELECT count(*) AS n FROM pgsched.waiting_workers").fetchone() == {"n": 0}


def test_a_session_can_opt_out_of_notify_for_a_bulk_load(dsn: str, conn: Conn) -> None:
    waiting_worker(conn, "default")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        conn.execute("SELECT set_config('pgsched.notify', 'off', false)")
        insert_jobs(conn, 2)
        assert notified(listener) == []
        conn.execute("SELECT set_config('pgsched.notify', 'on', false)")
        insert_jobs(conn, 2)
        assert notified(listener) == ["default"]


def marks(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.waiting_workers").fetchone()
    assert row is not None
    return int(row["n"])


def test_the_notifying_insert_takes_the_marks_so_later_inserts_send_none(dsn: str, conn: Conn) -> None:
    worker_id = waiting_worker(conn, "mail")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        insert_jobs(conn, 1, queue="mail")
        assert notified(listener) == ["mail"]
        assert marks(conn) == 0
        insert_jobs(conn, 1, queue="mail")
        assert notified(listener) == []
        conn.execute("INSERT INTO pgsched.waiting_workers (queue, worker_id) VALUES ('mail', %s)", [worker_id])
        insert_jobs(conn, 1, queue="mail")
        assert notified(listener) == ["mail"]


def test_marks_another_transaction_is_taking_are_skipped_not_waited_for(dsn: str, conn: Conn) -> None:
    waiting_worker(conn, "mail")
    with (
        psycopg.connect(dsn, autocommit=True) as listener,
        psycopg.connect(dsn) as first,
        psycopg.connect(dsn, autocommit=True) as second,
    ):
        listener.execute("LISTEN pgsched_jobs")
        first.execute("INSERT INTO pgsched.jobs (task, queue) VALUES ('noop', 'mail')")  # takes the mark, open
        second.execute("SET lock_timeout = '2s'")  # a wait on the first transaction's lock would fail here
        second.execute("INSERT INTO pgsched.jobs (task, queue) VALUES ('noop', 'mail')")
        assert notified(listener) == []
        first.commit()
        assert notified(listener) == ["mail"]


def succeeded(conn: Conn, job_id: int) -> bool:
    return conn.execute("SELECT state::text AS s FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone() == {
        "s": "succeeded"
    }


async def test_a_worker_marks_again_after_each_wake_up_so_no_job_waits_for_a_poll(
    start_worker: StartWorker, settings: Settings, conn: Conn
) -> None:
    await start_worker(settings.with_(poll_seconds=120.0))
    for _ in range(4):  # each job is enqueued while the worker sleeps: only a NOTIFY can wake it in time
        await until(lambda: marks(conn) == 1, timeout=20, message="the worker did not mark itself waiting")
        (job_id,) = insert_jobs(conn, 1, task="noop")
        await until(
            lambda job_id=job_id: succeeded(conn, job_id),
            timeout=20,
            message="a job waited for the poll: the worker was not woken",
        )


async def test_a_notify_that_arrives_while_the_worker_marks_itself_waiting_makes_it_mark_again(
    start_worker: StartWorker, settings: Settings, conn: Conn
) -> None:
    """An insert may take the new mark (and NOTIFY) between the mark's commit and the worker's reading of the reply:
    the worker must not then believe itself marked, or it sleeps through every later insert until its poll (2 s by
    default: the soak's windows with a p99 of 1.9 s). The store and the producer are the worker's own, with a step
    put in between: the insert, and a wait until its NOTIFY has reached the worker."""
    worker = await start_worker(settings.with_(poll_seconds=120.0))
    await until(lambda: marks(conn) == 1, timeout=20, message="the worker did not mark itself waiting")
    store, producer = worker._store, worker._producer
    mark, notified = store.worker_wait_mark, producer.notified
    heard, armed, raced = asyncio.Event(), [True], []

    async def mark_then_insert(worker_id: int, queues: Sequence[str]) -> None:
        await mark(worker_id, queues)
        if armed:
            armed.clear()
            heard.clear()
            raced.extend(insert_jobs(conn, 1, task="noop"))  # takes the mark just made, sends NOTIFY
            await asyncio.wait_for(heard.wait(), 20)

    def notified_heard() -> None:
        notified()
        heard.set()

    store.worker_wait_mark = mark_then_insert  # type: ignore[method-assign]
    producer.notified = notified_heard  # type: ignore[method-assign]
    (first,) = insert_jobs(conn, 1, task="noop")  # wakes the worker, which marks again: the race
    await until(lambda: bool(raced) and succeeded(conn, first) and succeeded(conn, raced[0]), timeout=20)
    await until(lambda: marks(conn) == 1, timeout=20, message="the worker believes a mark it lost is still there")
    (later,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: succeeded(conn, later), timeout=20, message="a job waited for the poll")
