"""The finished counts of pgsched.queue_counts come from per-partition counters that the leader keeps (jobs finished
since its watermark added, changed partitions counted again), never from a count of the whole history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Settings
from pgsched.history_counts import RECOUNT_EVERY, SETTLE
from pgsched.maintenance import Pruner
from pgsched.queries import query
from tests.support.factories import insert_jobs

FINISHED = ("succeeded", "dead", "cancelled")


def _pruner(dsn: str, *, minutes: bool = True) -> Pruner:
    if not minutes:
        return Pruner(Settings(dsn=dsn))
    return Pruner(
        Settings(
            dsn=dsn,
            retention_succeeded_seconds=120.0,
            retention_cancelled_seconds=120.0,
            retention_dead_seconds=120.0,
            history_partition_seconds=60.0,
        )
    )


async def _prune(dsn: str, now: datetime, *, minutes: bool = True) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        await _pruner(dsn, minutes=minutes).prune(leader, now=now)


def _db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def _end(conn: psycopg.Connection[Any], ids: list[int], state: str, at: datetime) -> None:
    conn.execute(
        "UPDATE pgsched.jobs SET state = %s::pgsched.job_state, attempt = 1, finished_at = %s WHERE id = ANY(%s)",
        [state, at, ids],
    )


def _published(conn: psycopg.Connection[Any]) -> None:
    """This session's statistics reach shared memory now (PostgreSQL would publish them within seconds)."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def _exact(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT queue, state::text AS state, count(*) AS n FROM pgsched.jobs"
        " WHERE state IN ('succeeded', 'dead', 'cancelled') GROUP BY queue, state"
    ).fetchall()
    return {(r["queue"], r["state"]): r["n"] for r in rows}


def _counted(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    rows = conn.execute("SELECT queue, succeeded, dead, cancelled FROM pgsched.queue_counts").fetchall()
    return {(r["queue"], s): r[s] for r in rows for s in FINISHED if r[s]}


async def test_the_finished_counts_follow_jobs_into_and_out_of_history_by_every_path(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    t0 = _db_now(conn)
    conn.execute("UPDATE pgsched.retention SET keep = interval '2 minutes'")  # as the leader will
    early = insert_jobs(conn, 6, queue="a")
    _end(conn, early[:4], "succeeded", t0)
    _end(conn, early[4:], "dead", t0)  # no partition yet: all in jobs_done_default
    await _prune(dsn, t0)  # creates the partitions: the early jobs move out of the default partition
    assert _counted(conn) == _exact(conn) == {("a", "succeeded"): 4, ("a", "dead"): 2}

    t1 = t0 + timedelta(minutes=3)  # their partition does not exist yet: jobs_done_default again
    b = insert_jobs(conn, 10, queue="b")
    a = insert_jobs(conn, 3, queue="a")
    _end(conn, b[:5], "succeeded", t1)
    _end(conn, b[5:8], "dead", t1)
    _end(conn, b[8:], "cancelled", t1)
    _end(conn, a, "dead", t1)
    await _prune(dsn, t1 + SETTLE + timedelta(seconds=5))  # drops the early jobs' partition, moves the new ones out
    assert _counted(conn) == _exact(conn) == {
        ("a", "dead"): 3, ("b", "succeeded"): 5, ("b", "dead"): 3, ("b", "cancelled"): 2,
    }  # fmt: skip

    conn.execute(query("dead_purge"), {"queue": "b", "task": None, "before": None})
    conn.execute("SELECT pgsched.retry(id) FROM unnest(%s::bigint[]) AS id", [a[:2]])  # back to jobs_queued
    conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [b[0]])
    _published(conn)
    await _prune(dsn, t1 + SETTLE + timedelta(seconds=20))
    assert _counted(conn) == _exact(conn) == {("a", "dead"): 1, ("b", "succeeded"): 4, ("b", "cancelled"): 2}


async def test_jobs_finished_since_the_last_pass_are_counted_without_waiting_to_settle(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    t0 = _db_now(conn)
    await _prune(dsn, t0)
    ended = insert_jobs(conn, 4, queue="fresh")
    _end(conn, ended, "succeeded", t0 + timedelta(seconds=1))  # after the watermark: counted live
    await _prune(dsn, t0 + timedelta(seconds=2))
    assert _counted(conn) == _exact(conn) == {("fresh", "succeeded"): 4}
    await _prune(dsn, t0 + SETTLE + timedelta(seconds=5))  # now in the counters: counted once, not twice
    assert _counted(conn) == _exact(conn)
    row = conn.execute("SELECT sum(jobs) AS n FROM pgsched.history_counts WHERE queue = 'fresh'").fetchone()
    assert row == {"n": 4}


async def test_counts_heal_by_themselves_after_a_delete_behind_their_back_or_a_counter_edited_by_hand(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    t0 = _db_now(conn)
    await _prune(dsn, t0, minutes=False)
    ended = insert_jobs(conn, 30, queue="h")
    _end(conn, ended, "succeeded", t0)
    await _prune(dsn, t0 + SETTLE + timedelta(seconds=1), minutes=False)
    assert _counted(conn) == _exact(conn) == {("h", "succeeded"): 30}
    part = conn.execute("SELECT tableoid::regclass::text AS p FROM pgsched.jobs WHERE id = %s", [ended[0]]).fetchone()
    assert part is not None

    conn.execute(f"DELETE FROM {part['p']} WHERE id = ANY(%s)", [ended[:5]])  # straight from the partition
    _published(conn)
    await _prune(dsn, t0 + timedelta(seconds=30), minutes=False)  # the partition's statistics moved: counted again
    assert _counted(conn) == _exact(conn) == {("h", "succeeded"): 25}

    conn.execute("UPDATE pgsched.history_counts SET jobs = jobs + 1000 WHERE queue = 'h'")  # no statistic sees it
    conn.execute(  # nor one inserted straight into history with a finish time the watermark has passed
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, finished_at) VALUES ('t', 'h', 'dead', 1, %s)", [t0]
    )
    conn.execute("UPDATE pgsched.jobs SET queue = 'h2' WHERE id = ANY(%s)", [ended[5:7]])  # nor an update in place
    _published(conn)
    await _prune(dsn, t0 + timedelta(seconds=40), minutes=False)
    assert _counted(conn) != _exact(conn)
    await _prune(dsn, t0 + timedelta(seconds=40) + RECOUNT_EVERY, minutes=False)  # the bound: every partition
    assert _counted(conn) == _exact(conn) == {("h", "succeeded"): 23, ("h2", "succeeded"): 2, ("h", "dead"): 1}


def _history_rows_read(conn: psycopg.Connection[Any]) -> int:
    """Rows that sequential and index scans have returned from the partitions of jobs_done so far."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        """SELECT coalesce(sum(coalesce(t.seq_tup_read, 0)
                               + (SELECT coalesce(sum(x.idx_tup_read), 0) FROM pg_stat_user_indexes x
                                   WHERE x.relid = t.relid)), 0)::bigint AS n
             FROM pg_stat_user_tables t JOIN pg_inherits i ON i.inhrelid = t.relid
            WHERE i.inhparent = 'pgsched.jobs_done'::regclass"""
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_refresh_reads_the_newly_finished_jobs_not_the_history(dsn: str, conn: psycopg.Connection[Any]) -> None:
    t0 = _db_now(conn)
    pruner = _pruner(dsn, minutes=False)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        await pruner.prune(leader, now=t0)  # partitions ahead
        loaded = 200_000
        # finished over the 3 days before t0 and kept 3 days, straight into jobs_done, as `pgsched bench history` loads
        conn.execute(query("bench_history_load"), {"first": 0, "n": loaded, "total": loaded, "days": 3, "at": t0})
        conn.execute(query("bench_history_ids_taken"), {"total": 200_000})
        conn.execute(query("bench_history_recount"))
        await pruner.queue_counts_refresh(leader, now=t0)  # counts the loaded partitions once
        await leader.execute("SELECT pg_stat_force_next_flush()")
        assert _counted(conn) == _exact(conn)

        live = insert_jobs(conn, 300, queue="live")
        _end(conn, live[:50], "succeeded", t0 + timedelta(seconds=1))
        _end(conn, live[50:60], "dead", t0 + timedelta(seconds=1))
        # as an enqueue naming finished jobs in depends_on does: an update in place has no partition counted again
        conn.execute("UPDATE pgsched.jobs SET has_dependents = true WHERE id IN (1, 100000, 199999)")
        _published(conn)
        before = _history_rows_read(conn)
        await pruner.queue_counts_refresh(leader, now=t0 + SETTLE + timedelta(seconds=5))
        await leader.execute("SELECT pg_stat_force_next_flush()")
        read = _history_rows_read(conn) - before
    assert _counted(conn) == _exact(conn)
    assert read <= 60 + 100, read  # the 60 newly finished jobs (added, read once more by the count), no history
