"""The insert trigger sends NOTIFY only while some worker waits on the queue (migration 0002)."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.factories import insert_jobs

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
