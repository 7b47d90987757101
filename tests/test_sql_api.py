"""The SQL API works from plain psql-style SQL, with readable errors."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.worker.outcome import error_entry


def test_a_plain_insert_with_only_task_makes_a_queued_job(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('x')")
    row = conn.execute("SELECT queue, state::text, args, attempt, max_attempts FROM pgsched.jobs").fetchone()
    assert row == {"queue": "default", "state": "queued", "args": {}, "attempt": 0, "max_attempts": 5}
    stats = conn.execute("SELECT queue, due FROM pgsched.queue_stats").fetchall()
    assert stats == [{"queue": "default", "due": 1}]


def test_enqueue_with_named_arguments_returns_the_id(conn: psycopg.Connection[dict[str, Any]]) -> None:
    row = conn.execute(
        """SELECT pgsched.enqueue('send_email', '{"to": "a@example.com"}'::jsonb, queue => 'emails',
                  priority => 10, run_at => now() + interval '5 minutes', max_attempts => 7) AS id"""
    ).fetchone()
    assert row is not None
    job = conn.execute("SELECT * FROM pgsched.jobs WHERE id = %s", [row["id"]]).fetchone()
    assert job is not None
    assert (job["queue"], job["priority"], job["max_attempts"], job["args"]) == (
        "emails",
        10,
        7,
        {"to": "a@example.com"},
    )


def test_enqueue_with_an_existing_run_key_returns_that_job_and_creates_nothing(
    conn: psycopg.Connection[dict[str, Any]],
) -> None:
    first = conn.execute("SELECT pgsched.enqueue('t', run_key => 'welcome:42') AS id").fetchone()
    second = conn.execute("SELECT pgsched.enqueue('t', '{\"x\": 1}', run_key => 'welcome:42') AS id").fetchone()
    assert first == second
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 1}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT pgsched.enqueue('t', queue => 'Bad Queue')", "invalid queue name"),
        ("SELECT pgsched.enqueue('no spaces allowed')", "invalid task name"),
        ("SELECT pgsched.enqueue('t', '[1, 2]'::jsonb)", "args must be a JSON object"),
        ("SELECT pgsched.enqueue('t', priority => 5000)", "priority must be between"),
        ("SELECT pgsched.retry(424242)", "job 424242 does not exist"),
        ("SELECT pgsched.cancel(424242)", "job 424242 does not exist"),
    ],
)
def test_sql_functions_raise_readable_errors(conn: psycopg.Connection[dict[str, Any]], call: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(call)  # type: ignore[arg-type]


def test_cancel_and_retry_move_a_job_between_states(conn: psycopg.Connection[dict[str, Any]]) -> None:
    job_id = conn.execute("SELECT pgsched.enqueue('t') AS id").fetchone()["id"]  # type: ignore[index]
    assert conn.execute("SELECT pgsched.cancel(%s)::text AS s", [job_id]).fetchone() == {"s": "cancelled"}
    with pytest.raises(psycopg.Error, match="already finished"):
        conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    conn.execute("SELECT pgsched.retry(%s)", [job_id])
    row = conn.execute("SELECT state::text, finished_at FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"state": "queued", "finished_at": None}


def test_cancel_of_a_running_job_signals_its_worker(dsn: str, conn: psycopg.Connection[dict[str, Any]]) -> None:
    job_id = conn.execute("SELECT pgsched.enqueue('t') AS id").fetchone()["id"]  # type: ignore[index]
    conn.execute("UPDATE pgsched.jobs SET state = 'running', attempt = 1 WHERE id = %s", [job_id])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_cancel")
        assert conn.execute("SELECT pgsched.cancel(%s)::text AS s", [job_id]).fetchone() == {"s": "running"}
        notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert notes == [str(job_id)]
    row = conn.execute("SELECT cancel_requested_at IS NOT NULL AS asked FROM pgsched.jobs WHERE id = %s", [job_id])
    assert row.fetchone() == {"asked": True}


def test_insert_notifies_once_per_statement_and_queue_and_only_for_due_jobs(
    dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    # Adaptive NOTIFY (migration 0002): only queues a worker waits on are notified.
    worker = conn.execute("INSERT INTO pgsched.workers (host, pid) VALUES ('t', 1) RETURNING id").fetchone()
    assert worker is not None
    conn.execute(
        "INSERT INTO pgsched.waiting_workers (queue, worker_id) SELECT q, %s FROM unnest(ARRAY['a', 'b', 'c']) q",
        [worker["id"]],
    )
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        conn.execute("INSERT INTO pgsched.jobs (task, queue) SELECT 't', 'a' FROM generate_series(1, 50)")
        conn.execute("INSERT INTO pgsched.jobs (task, queue) VALUES ('t', 'b'), ('t', 'c'), ('t', 'b')")
        conn.execute("INSERT INTO pgsched.jobs (task, queue, run_at) VALUES ('t', 'later', now() + interval '1 hour')")
        conn.execute("SELECT pg_notify('pgsched_jobs', 'end')")
        payloads = []
        for note in listener.notifies(timeout=3):
            payloads.append(note.payload)
            if note.payload == "end":
                break
    assert sorted(payloads[:-1]) == ["a", "b", "c"]


def test_a_schedule_with_an_unknown_time_zone_is_refused(conn: psycopg.Connection[dict[str, Any]]) -> None:
    with pytest.raises(psycopg.Error, match='unknown time zone "Mars/Olympus"'):
        conn.execute(
            "INSERT INTO pgsched.schedules (name, cron, task, timezone) VALUES ('n', '0 3 * * *', 'b', 'Mars/Olympus')"
        )


def test_a_schedules_zone_is_looked_up_when_set_not_at_every_write(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """An update that keeps the zone (a leader's fire, a new cron) does not look it up again, and one that changes it
    does. The stored zone is made unknown behind the trigger's back (replica role) to tell a lookup from none."""
    conn.execute(
        "INSERT INTO pgsched.schedules (name, cron, task, timezone) VALUES ('n', '0 3 * * *', 'b', 'Asia/Tokyo')"
    )
    conn.execute("SET session_replication_role = replica")
    conn.execute("UPDATE pgsched.schedules SET timezone = 'Gone/Zone' WHERE name = 'n'")
    conn.execute("RESET session_replication_role")
    conn.execute("UPDATE pgsched.schedules SET cron = '0 4 * * *', last_fired_at = now() WHERE name = 'n'")
    with pytest.raises(psycopg.Error, match='unknown time zone "Mars/Olympus"'):
        conn.execute("UPDATE pgsched.schedules SET timezone = 'Mars/Olympus' WHERE name = 'n'")
    conn.execute("UPDATE pgsched.schedules SET timezone = 'Europe/Paris' WHERE name = 'n'")
    row = conn.execute("SELECT cron, timezone FROM pgsched.schedules WHERE name = 'n'").fetchone()
    assert row == {"cron": "0 4 * * *", "timezone": "Europe/Paris"}


def test_a_schedules_zone_is_read_from_the_zone_table_first(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """pg_timezone_names reads every zone file (50-60 ms a call); pgsched.time_zones holds its names (migration 0054)
    and answers first: a name only it holds is accepted, a name only the server knows too (a later zone update)."""
    known = conn.execute("SELECT count(*) AS n FROM pgsched.time_zones WHERE name IN ('Europe/Paris', 'Asia/Tokyo')")
    assert known.fetchone() == {"n": 2}
    conn.execute("INSERT INTO pgsched.time_zones (name) VALUES ('Test/Only_Here')")
    conn.execute("DELETE FROM pgsched.time_zones WHERE name = 'America/Lima'")
    conn.execute(
        "INSERT INTO pgsched.schedules (name, cron, task, timezone)"
        " VALUES ('a', '0 3 * * *', 'b', 'Test/Only_Here'), ('b', '0 3 * * *', 'b', 'America/Lima')"
    )
    with pytest.raises(psycopg.Error, match='unknown time zone "Test/Not_Anywhere"'):
        conn.execute(
            "INSERT INTO pgsched.schedules (name, cron, task, timezone)"
            " VALUES ('c', '0 3 * * *', 'b', 'Test/Not_Anywhere')"
        )


def test_retry_wakes_a_worker_waiting_on_the_queue(dsn: str, conn: psycopg.Connection[dict[str, Any]]) -> None:
    worker = conn.execute("INSERT INTO pgsched.workers (host, pid) VALUES ('test', 1) RETURNING id").fetchone()["id"]  # type: ignore[index]
    job_id = conn.execute("SELECT pgsched.enqueue('t', queue => 'q') AS id").fetchone()["id"]  # type: ignore[index]
    conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    conn.execute("INSERT INTO pgsched.waiting_workers (queue, worker_id) VALUES ('q', %s)", [worker])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pgsched_jobs")
        conn.execute("SELECT pgsched.retry(%s)", [job_id])
        notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert notes == ["q"]


@pytest.mark.parametrize(
    ("queue", "task", "accepted"),
    [
        ("q" * 63, "t" * 200, True),  # the longest names
        ("0.a-b_c", "_A9.b:c-d_", True),
        ("q" * 64, "t", False),
        ("q", "t" * 201, False),
        ("Q", "t", False),
        ("_q", "t", False),
        ("q", "9t", False),
        ("q", "t/x", False),
        ("q", "t\n", False),
        ("q\n", "t", False),
    ],
)
def test_the_table_checks_queue_and_task_names(
    conn: psycopg.Connection[dict[str, Any]], queue: str, task: str, accepted: bool
) -> None:
    # Migration 0014 rewrote these checks without counted repeats (PostgreSQL re-checks them on every
    # UPDATE); the names they accept must not change.
    insert = "INSERT INTO pgsched.jobs (queue, task) VALUES (%s, %s)"
    if accepted:
        conn.execute(insert, [queue, task])
        conn.execute("UPDATE pgsched.jobs SET attempt = 1")  # every update re-checks them
        return
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert, [queue, task])


def test_lock_held_sees_a_session_lock_of_this_database_and_its_holder(
    dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    def held(key: int, holder: int | None = None) -> bool:
        row = conn.execute("SELECT pgsched.lock_held(%s, %s) AS held", [key, holder]).fetchone()
        return bool(row and row["held"])

    assert not held(42)
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SELECT pg_try_advisory_lock(pgsched.lock_namespace(), 42)")
        pid = other.info.backend_pid
        assert held(42) and held(42, pid)
        assert not held(42, conn.info.backend_pid) and not held(43)
        other.execute("SELECT pg_advisory_unlock(pgsched.lock_namespace(), 42)")
        assert not held(42)


def test_error_entry_has_the_shape_of_the_workers_entries(conn: psycopg.Connection[dict[str, Any]]) -> None:
    row = conn.execute("SELECT pgsched.error_entry(2, 'boom', 'worker_lost', '{\"worker_id\": 7}') AS e").fetchone()
    assert row is not None
    python = error_entry(2, "boom", kind="worker_lost")
    assert set(row["e"]) == set(python) | {"worker_id"}
    assert {k: row["e"][k] for k in ("attempt", "error", "kind", "traceback")} == {
        k: python[k] for k in ("attempt", "error", "kind", "traceback")
    }
