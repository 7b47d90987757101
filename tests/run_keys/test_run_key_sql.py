"""Run keys over explicit scopes from plain SQL: pgsched.enqueue, a plain INSERT, a redrive, the pruner."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from pgsched import db
from pgsched.maintenance import Pruner
from pgsched.operator_store import OperatorStore

Conn = psycopg.Connection[dict[str, Any]]


def enqueue(conn: Conn, key: str, extra: str = "", args: str = "{}") -> int:
    row = conn.execute(
        f"SELECT pgsched.enqueue('t', %s::jsonb, run_key => %s{extra}) AS id",  # type: ignore[arg-type]
        [args, key],
    ).fetchone()
    assert row is not None
    return int(row["id"])


def finish(conn: Conn, job_id: int, state: str = "succeeded") -> None:
    conn.execute(
        "UPDATE pgsched.jobs SET state = %s::pgsched.job_state, finished_at = now() WHERE id = %s", [state, job_id]
    )


def holder(conn: Conn, key: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT job_id, scope, held_until IS NOT NULL AS until FROM pgsched.run_keys WHERE run_key = %s", [key]
    ).fetchone()


def test_the_default_scope_is_retention_a_finished_job_keeps_its_key_until_its_row_goes(conn: Conn) -> None:
    first = enqueue(conn, "welcome:42")
    finish(conn, first)
    assert enqueue(conn, "welcome:42") == first
    conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [first])
    second = enqueue(conn, "welcome:42")
    assert second != first
    assert holder(conn, "welcome:42") == {"job_id": second, "scope": "retention", "until": False}


@pytest.mark.parametrize("ended", ["succeeded", "dead", "cancelled", "deleted"])
def test_an_active_key_is_free_again_once_its_job_ended(conn: Conn, ended: str) -> None:
    first = enqueue(conn, "sync:1", ", run_key_scope => 'active'")
    assert enqueue(conn, "sync:1", ", run_key_scope => 'active'") == first
    conn.execute("UPDATE pgsched.jobs SET state = 'running', started_at = now() WHERE id = %s", [first])
    assert enqueue(conn, "sync:1", ", run_key_scope => 'active'") == first
    if ended == "deleted":
        conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [first])
    else:
        finish(conn, first, ended)
    second = enqueue(conn, "sync:1", ", run_key_scope => 'active'")
    assert second != first
    assert holder(conn, "sync:1") == {"job_id": second, "scope": "active", "until": False}


def test_a_period_key_is_held_for_its_period_from_the_first_enqueue_whatever_the_job_does(conn: Conn) -> None:
    first = enqueue(conn, "digest", ", run_key_period => interval '1 hour'")
    finish(conn, first)
    conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [first])
    assert enqueue(conn, "digest", ", run_key_period => interval '1 hour'") == first  # still within the hour
    conn.execute("UPDATE pgsched.run_keys SET held_until = now() - interval '1 second' WHERE run_key = 'digest'")
    second = enqueue(conn, "digest", ", run_key_scope => 'period', run_key_period => interval '1 hour'")
    assert second != first
    assert holder(conn, "digest") == {"job_id": second, "scope": "period", "until": True}
    row = conn.execute("SELECT run_key_scope, run_key_period FROM pgsched.jobs WHERE id = %s", [second]).fetchone()
    assert row is not None and row["run_key_scope"] == "period" and str(row["run_key_period"]) == "1:00:00"


def test_the_holders_scope_decides_not_the_newcomers(conn: Conn) -> None:
    first = enqueue(conn, "k")  # retention
    finish(conn, first)
    assert enqueue(conn, "k", ", run_key_scope => 'active'") == first


def test_replace_debounces_a_job_that_has_not_started(conn: Conn) -> None:
    first = enqueue(conn, "d", ", run_key_scope => 'active'", args='{"n": 1}')
    again = conn.execute(
        """SELECT pgsched.enqueue('t', '{"n": 2}', run_key => 'd', run_key_scope => 'active', on_conflict => 'replace',
                                  run_at => now() + interval '10 minutes', priority => 7) AS id"""
    ).fetchone()
    assert again == {"id": first}
    job = conn.execute(
        "SELECT args, priority, run_at > now() + interval '9 minutes' AS later FROM pgsched.jobs WHERE id = %s",
        [first],
    ).fetchone()
    assert job == {"args": {"n": 2}, "priority": 7, "later": True}
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 1}


def test_replace_makes_a_new_job_take_the_key_from_a_running_one(conn: Conn) -> None:
    first = enqueue(conn, "d", ", run_key_scope => 'active'", args='{"n": 1}')
    conn.execute("UPDATE pgsched.jobs SET state = 'running', started_at = now() WHERE id = %s", [first])
    second = enqueue(conn, "d", ", run_key_scope => 'active', on_conflict => 'replace'", args='{"n": 2}')
    assert second != first
    rows = conn.execute("SELECT id, args, state::text FROM pgsched.jobs ORDER BY id").fetchall()
    assert rows == [
        {"id": first, "args": {"n": 1}, "state": "running"},
        {"id": second, "args": {"n": 2}, "state": "queued"},
    ]
    assert holder(conn, "d") == {"job_id": second, "scope": "active", "until": False}


def test_replace_returns_a_finished_holder_that_still_holds_its_key_untouched(conn: Conn) -> None:
    first = enqueue(conn, "r", args='{"n": 1}')
    finish(conn, first)
    assert enqueue(conn, "r", ", on_conflict => 'replace'", args='{"n": 2}') == first
    row = conn.execute("SELECT args FROM pgsched.jobs WHERE id = %s", [first]).fetchone()
    assert row == {"args": {"n": 1}}


def test_a_plain_insert_of_a_held_key_fails_with_unique_violation_naming_the_key_and_holder(conn: Conn) -> None:
    first = enqueue(conn, "welcome:42")
    with pytest.raises(pg_errors.UniqueViolation) as raised:
        conn.execute("INSERT INTO pgsched.jobs (task, run_key) VALUES ('t', 'welcome:42')")
    diag = raised.value.diag
    assert diag.message_primary == f"duplicate run_key 'welcome:42': job {first} holds it"
    assert diag.message_detail == "Key (run_key)=(welcome:42) already exists."
    assert diag.constraint_name == "run_keys_pkey"
    assert diag.column_name == "run_key"


def test_a_plain_insert_takes_a_scope_and_a_stale_key(conn: Conn) -> None:
    conn.execute("INSERT INTO pgsched.jobs (task, run_key, run_key_scope) VALUES ('t', 'a', 'active')")
    (first,) = conn.execute("SELECT id FROM pgsched.jobs").fetchall()
    with pytest.raises(pg_errors.UniqueViolation):
        conn.execute("INSERT INTO pgsched.jobs (task, run_key, run_key_scope) VALUES ('t', 'a', 'active')")
    finish(conn, first["id"])
    conn.execute("INSERT INTO pgsched.jobs (task, run_key, run_key_scope) VALUES ('t', 'a', 'active')")
    conn.execute("INSERT INTO pgsched.jobs (task, run_key, run_key_period) VALUES ('t', 'p', interval '5 minutes')")
    row = conn.execute("SELECT run_key_scope FROM pgsched.jobs WHERE run_key = 'p'").fetchone()
    assert row == {"run_key_scope": "period"}


def test_a_finished_row_inserted_or_moved_takes_no_key(conn: Conn) -> None:
    conn.execute("INSERT INTO pgsched.jobs (task, run_key, state, finished_at) VALUES ('t', 'f', 'succeeded', now())")
    assert holder(conn, "f") is None
    enqueue(conn, "f")  # the key is free: the finished row arrived holding nothing


def test_a_redriven_dead_job_keeps_its_own_key(conn: Conn) -> None:
    first = enqueue(conn, "x", ", run_key_scope => 'active'")
    finish(conn, first, "dead")
    conn.execute("SELECT pgsched.retry(%s)", [first])
    assert holder(conn, "x") == {"job_id": first, "scope": "active", "until": False}
    assert enqueue(conn, "x", ", run_key_scope => 'active'") == first


def test_a_dead_job_whose_key_a_newer_job_holds_cannot_be_redriven(conn: Conn) -> None:
    first = enqueue(conn, "x", ", run_key_scope => 'active'")
    finish(conn, first, "dead")
    second = enqueue(conn, "x", ", run_key_scope => 'active'")
    with pytest.raises(pg_errors.UniqueViolation, match=f"job {second} holds it"):
        conn.execute("SELECT pgsched.retry(%s)", [first])
    finish(conn, second)
    conn.execute("SELECT pgsched.retry(%s)", [first])
    assert holder(conn, "x") == {"job_id": first, "scope": "active", "until": False}


async def test_retrying_every_dead_job_leaves_dead_the_ones_whose_key_a_newer_job_holds(dsn: str, conn: Conn) -> None:
    taken = enqueue(conn, "x", ", run_key_scope => 'active'")
    finish(conn, taken, "dead")
    newer = enqueue(conn, "x", ", run_key_scope => 'active'")
    free = enqueue(conn, "y", ", run_key_scope => 'active'")
    finish(conn, free, "dead")
    pool = db.async_pool(dsn, "test", min_size=1, max_size=2)
    await pool.open()
    try:
        retried = await OperatorStore(pool).dead_retry_many()
    finally:
        await pool.close()
    assert retried == [free]
    states = conn.execute("SELECT id, state::text FROM pgsched.jobs ORDER BY id").fetchall()
    assert states == [{"id": taken, "state": "dead"}, {"id": newer, "state": "queued"}, {"id": free, "state": "queued"}]


def test_changing_a_live_jobs_key_moves_its_hold(conn: Conn) -> None:
    first = enqueue(conn, "old")
    conn.execute("UPDATE pgsched.jobs SET run_key = 'new' WHERE id = %s", [first])
    assert holder(conn, "old") is None
    assert holder(conn, "new") == {"job_id": first, "scope": "retention", "until": False}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", run_key_scope => 'forever'", "run_key_scope must be active, period or retention"),
        (", run_key_scope => 'period'", "run_key_period must be a positive interval"),
        (", run_key_scope => 'active', run_key_period => interval '1 hour'", "run_key_period must be a positive"),
        (", run_key_period => interval '-1 hour'", "run_key_period must be a positive interval"),
        (", on_conflict => 'update'", "on_conflict must be existing or replace"),
    ],
)
def test_bad_scope_period_or_policy_is_a_readable_sql_error(conn: Conn, extra: str, message: str) -> None:
    with pytest.raises(pg_errors.InvalidParameterValue, match=message):
        enqueue(conn, "k", extra)


def test_scope_without_a_run_key_is_a_readable_sql_error(conn: Conn) -> None:
    with pytest.raises(pg_errors.InvalidParameterValue, match="need a run_key"):
        conn.execute("SELECT pgsched.enqueue('t', run_key_scope => 'active')")


def test_old_positional_and_named_calls_keep_working(conn: Conn) -> None:
    row = conn.execute(
        "SELECT pgsched.enqueue('t', '{}'::jsonb, 'default', 0, now(), 'old-call', 3,"
        " NULL, NULL, NULL, '{}', '{}', NULL) AS id"
    ).fetchone()
    assert row is not None
    assert enqueue(conn, "old-call") == row["id"]


async def test_the_pruner_deletes_stale_keys_and_keeps_held_ones(dsn: str, conn: Conn, settings: Any) -> None:
    held = {enqueue(conn, "ret"), enqueue(conn, "act", ", run_key_scope => 'active'")}
    held.add(enqueue(conn, "per", ", run_key_period => interval '1 hour'"))
    gone_ret = enqueue(conn, "ret-gone")
    conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [gone_ret])
    finish(conn, enqueue(conn, "act-done", ", run_key_scope => 'active'"))
    enqueue(conn, "per-done", ", run_key_period => interval '1 second'")
    conn.execute("UPDATE pgsched.run_keys SET held_until = now() - interval '1 second' WHERE run_key = 'per-done'")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        deleted = await Pruner(settings).run_key_prune(aconn)
    assert deleted == 3
    rows = conn.execute("SELECT run_key, job_id FROM pgsched.run_keys ORDER BY run_key").fetchall()
    assert [r["run_key"] for r in rows] == ["act", "per", "ret"]
    assert {r["job_id"] for r in rows} == held
