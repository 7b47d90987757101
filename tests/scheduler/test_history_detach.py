"""A passed time partition leaves pgsched.jobs in a short transaction of its own (DETACH, with its counters) and is
dropped by the next step (migration 0038): finishing jobs never wait for the DROP, and a table detached but not
dropped (the leader died in between) is out of sight and dropped by the next leader."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Settings
from pgsched.history_counts import SETTLE
from pgsched.maintenance import Pruner
from pgsched.queries import query
from tests.support.factories import insert_jobs

MINUTE = 60.0
STEP = {"width": MINUTE, "max_ahead": 400}


def _pruner(dsn: str) -> Pruner:
    return Pruner(
        Settings(dsn=dsn, retention_succeeded_seconds=2 * MINUTE, retention_cancelled_seconds=2 * MINUTE,
                 retention_dead_seconds=2 * MINUTE, history_partition_seconds=MINUTE)
    )  # fmt: skip


async def _prune(dsn: str, now: datetime) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        pruner = _pruner(dsn)
        await pruner.prune(leader, now=now)
        while pruner.history_behind:
            await pruner.history_maintain(leader, now=now)


def _db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def _next_minute(conn: psycopg.Connection[Any]) -> datetime:
    """The start of the database's next minute. A leader's clock (``now``) set from there keeps the partition of that
    minute from passing for a whole minute, whatever second the test starts at: from ``now()`` itself, the partition
    passed 15 s later one time in four."""
    row = conn.execute("SELECT date_trunc('minute', now()) + interval '1 minute' AS at").fetchone()
    assert row is not None
    return row["at"]  # type: ignore[no-any-return]


def _passes_at(conn: psycopg.Connection[Any], part: str) -> datetime:
    row = conn.execute("SELECT purge_to FROM pgsched.history_partitions WHERE name = %s", [part]).fetchone()
    assert row is not None
    return row["purge_to"]  # type: ignore[no-any-return]


def _in_the_first_partition(conn: psycopg.Connection[Any], n: int, queue: str, now: datetime) -> tuple[list[int], str]:
    """n jobs of ``queue`` finished at ``now`` and purged first: in the oldest time partition, made from the minute of
    ``now`` on; its name."""
    ids = insert_jobs(conn, n, queue=queue)
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'succeeded', attempt = 1, finished_at = %s,"
        " purge_at = date_trunc('minute', %s::timestamptz) WHERE id = ANY(%s)",
        [now, now, ids],
    )
    parts = conn.execute("SELECT DISTINCT tableoid::regclass::text AS p FROM pgsched.jobs WHERE id = ANY(%s)", [ids])
    (part,) = [r["p"] for r in parts.fetchall()]
    assert part != "pgsched.jobs_done_default"
    return ids, part.removeprefix("pgsched.")


def _counts(conn: psycopg.Connection[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(exact, counted): succeeded jobs per queue in pgsched.jobs, and in pgsched.queue_counts."""
    exact = conn.execute("SELECT queue, count(*) AS n FROM pgsched.jobs WHERE state = 'succeeded' GROUP BY queue")
    counted = conn.execute("SELECT queue, succeeded AS n FROM pgsched.queue_counts WHERE succeeded > 0")
    return {r["queue"]: r["n"] for r in exact.fetchall()}, {r["queue"]: r["n"] for r in counted.fetchall()}


def _table(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass('pgsched.' || quote_ident(%s)) IS NOT NULL AS there", [name]).fetchone()
    return bool(row and row["there"])


def _step(conn: psycopg.Connection[Any], now: datetime) -> dict[str, int]:
    row = conn.execute(query("history_maintain_step"), {**STEP, "now": now}).fetchone()
    assert row is not None
    return dict(row)


def _locked_by(conn: psycopg.Connection[Any], pid: int) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT c.relname AS rel, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = %s AND l.granted AND c.relname IN ('jobs', 'jobs_done', 'jobs_done_default')",
        [pid],
    )
    return {(r["rel"], r["mode"]) for r in rows.fetchall()}


async def test_a_table_detached_by_a_leader_that_died_before_the_drop_is_out_of_sight_and_dropped_by_the_next(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    t0 = _next_minute(conn)
    await _prune(dsn, t0)
    gone, part = _in_the_first_partition(conn, 5, "old", t0)
    later = t0 + timedelta(minutes=4)  # the partition has passed
    kept = insert_jobs(conn, 3, queue="kept")
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', attempt = 1, finished_at = %s WHERE id = ANY(%s)",
                 [later, kept])  # fmt: skip
    settled = t0 + SETTLE + timedelta(seconds=5)  # the old jobs are in the counters, their partition still there
    assert settled < _passes_at(conn, part)
    await _prune(dsn, settled)
    exact, counted = _counts(conn)
    assert exact == counted == {"old": 5, "kept": 3}
    # The dying leader's last step: the detach committed, the process gone before the next step.
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        assert _step(leader, later) == {"created": 0, "dropped": 1, "busy": 0, "removed": 0}
    assert _table(conn, part)
    assert conn.execute("SELECT name FROM pgsched.history_detached").fetchall() == [{"name": part}]
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [gone]).fetchone() == {"n": 0}
    assert part not in {r["name"] for r in conn.execute("SELECT name FROM pgsched.history_partitions").fetchall()}
    left = conn.execute(
        "SELECT count(*) AS n FROM pgsched.history_counts WHERE part = %s::regclass", [f"pgsched.{part}"]
    )
    assert left.fetchone() == {"n": 0}  # its counters went with the detach
    await _prune(dsn, later + SETTLE)  # the next leader
    assert not _table(conn, part)
    assert conn.execute("SELECT count(*) AS n FROM pgsched.history_detached").fetchone() == {"n": 0}
    exact, counted = _counts(conn)
    assert exact == counted == {"kept": 3}


def test_a_finish_goes_on_while_the_detached_partition_is_dropped(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """The leader's steps run in transactions held open here, so that the other connection acts while each holds
    its locks: the detach holds ACCESS EXCLUSIVE on jobs_done (as before), the drop nothing a finish needs."""
    t0 = _db_now(conn)
    conn.execute("UPDATE pgsched.retention SET keep = interval '2 minutes' WHERE queue = '*'")
    conn.execute("SELECT * FROM pgsched.history_maintain(interval '1 minute', %s)", [t0])
    gone, part = _in_the_first_partition(conn, 5, "old", t0)
    later = t0 + timedelta(minutes=4)
    running = insert_jobs(conn, 1, state="running", attempt=1, queue="now")
    with psycopg.connect(dsn, row_factory=dict_row) as leader, psycopg.connect(dsn, autocommit=True) as worker:
        pid = leader.info.backend_pid
        assert _step(leader, later)["dropped"] == 1
        assert ("jobs_done", "AccessExclusiveLock") in _locked_by(conn, pid)
        leader.commit()
        assert _step(leader, later)["removed"] == 1  # the DROP, its transaction still open
        assert _table(leader, part) is False
        assert _locked_by(conn, pid) == set()
        worker.execute("SET lock_timeout = '5s'")  # a wait for the leader's locks would end in an error
        worker.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", running)
        assert _table(conn, part)  # others still see the table: the drop is not committed
        leader.commit()
    assert not _table(conn, part)
    assert conn.execute("SELECT state::text FROM pgsched.jobs WHERE id = %s", running).fetchone() == {
        "state": "succeeded"
    }
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [gone]).fetchone() == {"n": 0}


def test_a_busy_detach_is_tried_once_a_step_not_once_per_passed_partition(conn: psycopg.Connection[Any]) -> None:
    """Every detach needs the same lock on jobs_done: while a reader holds it, a step waits lock_timeout once."""
    t0 = _db_now(conn)
    conn.execute("UPDATE pgsched.retention SET keep = interval '3 minutes' WHERE queue = '*'")
    made = conn.execute("SELECT * FROM pgsched.history_maintain(interval '1 minute', %s)", [t0]).fetchone()
    assert made is not None and made["created"] >= 4
    later = t0 + timedelta(minutes=30)  # every one of them has passed
    with psycopg.connect(conn.info.dsn) as reader:
        reader.execute("SELECT count(*) FROM pgsched.jobs WHERE state = 'succeeded'")  # holds a lock on jobs_done
        assert _step(conn, later) == {"created": 0, "dropped": 0, "busy": 1, "removed": 0}
    assert _step(conn, later) == {"created": 0, "dropped": 1, "busy": 0, "removed": 0}
    assert _step(conn, later) == {"created": 0, "dropped": 0, "busy": 0, "removed": 1}
