"""The leader's chart-history rollup: finished jobs become per-minute rows, once, reading only new rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched.config import Settings
from pgsched.job_stats import JobStatsRollup
from pgsched.maintenance import Pruner
from pgsched.queries import query

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def finish(conn: psycopg.Connection[Any], n: int, state: str, at: datetime, *, queue: str = "default", task: str = "t",
           wait: float = 1.0, run: float = 2.0, errors: int = 0) -> None:  # fmt: skip
    """n jobs finished at ``at`` that waited ``wait`` s before starting and ran ``run`` s."""
    errs = json.dumps([{"attempt": i + 1, "error": "boom"} for i in range(errors)])
    conn.execute(
        """INSERT INTO pgsched.jobs (task, queue, state, attempt, run_at, started_at, finished_at, errors)
           SELECT %(task)s, %(queue)s, %(state)s::pgsched.job_state, 1,
                  %(at)s::timestamptz - make_interval(secs => %(run)s + %(wait)s),
                  %(at)s::timestamptz - make_interval(secs => %(run)s), %(at)s, %(errors)s::jsonb
             FROM generate_series(1, %(n)s)""",
        {"task": task, "queue": queue, "state": state, "at": at, "run": run, "wait": wait, "errors": errs, "n": n},
    )


def minutes(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT minute, queue, task, succeeded, failed, dead, cancelled, wait_sum, wait_max, run_sum, run_max
             FROM pgsched.job_stats_minute ORDER BY minute, queue, task"""
    ).fetchall()


async def rollup(dsn: str, now: datetime) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        return await JobStatsRollup().rollup(leader, now=now)


async def test_a_leader_pass_rolls_finished_jobs_up_per_minute_queue_and_task(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    m1 = NOW.replace(second=0) - timedelta(minutes=5)
    finish(conn, 3, "succeeded", m1 + timedelta(seconds=10), wait=1.0, run=2.0)
    finish(conn, 1, "succeeded", m1 + timedelta(seconds=50), wait=3.0, run=4.0)
    finish(conn, 2, "dead", m1 + timedelta(seconds=20), errors=3, wait=0.5, run=0.5)
    finish(conn, 1, "cancelled", m1 + timedelta(minutes=1), queue="emails", task="send")
    insert_queued = "INSERT INTO pgsched.jobs (task) VALUES ('not_finished')"
    conn.execute(insert_queued)

    assert await rollup(dsn, NOW) == 2
    rows = minutes(conn)
    assert [(r["minute"], r["queue"], r["task"]) for r in rows] == [
        (m1, "default", "t"),
        (m1 + timedelta(minutes=1), "emails", "send"),
    ]
    first, second = rows
    assert (first["succeeded"], first["dead"], first["failed"], first["cancelled"]) == (4, 2, 6, 0)
    assert first["wait_sum"] == 3 * 1.0 + 3.0 + 2 * 0.5 and first["wait_max"] == 3.0
    assert first["run_sum"] == 3 * 2.0 + 4.0 + 2 * 0.5 and first["run_max"] == 4.0
    assert (second["cancelled"], second["succeeded"], second["wait_sum"]) == (1, 0, 0)
    hours = conn.execute(
        "SELECT hour, queue, succeeded, dead, cancelled, run_max FROM pgsched.job_stats_hour ORDER BY queue"
    ).fetchall()
    hour = m1.replace(minute=0)
    assert hours == [
        {"hour": hour, "queue": "default", "succeeded": 4, "dead": 2, "cancelled": 0, "run_max": 4.0},
        {"hour": hour, "queue": "emails", "succeeded": 0, "dead": 0, "cancelled": 1, "run_max": 0.0},
    ]


async def test_a_second_pass_counts_nothing_twice_and_adds_only_rows_finished_since(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    minute = NOW.replace(second=0)
    finish(conn, 5, "succeeded", NOW - timedelta(seconds=25))
    await rollup(dsn, NOW)  # counts up to NOW - 10 s
    before = minutes(conn)
    assert [r["succeeded"] for r in before] == [5]
    assert await rollup(dsn, NOW) == 0  # same instant: nothing new
    assert minutes(conn) == before

    finish(conn, 2, "succeeded", NOW + timedelta(seconds=1))  # after the watermark, into the same minute
    finish(conn, 1, "dead", NOW - timedelta(seconds=5))
    assert await rollup(dsn, NOW + timedelta(minutes=1)) == 1
    (row,) = minutes(conn)
    assert (row["minute"], row["succeeded"], row["dead"]) == (minute, 7, 1)


async def test_jobs_finishing_within_the_settle_time_wait_for_the_next_pass(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    finish(conn, 1, "succeeded", NOW - timedelta(seconds=3))  # may still have company committing
    assert await rollup(dsn, NOW) == 0
    assert await rollup(dsn, NOW + timedelta(seconds=30)) == 1
    assert [r["succeeded"] for r in minutes(conn)] == [1]


async def test_the_rollup_reads_only_the_new_rows_through_the_finished_index(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    for day in range(1, 4):  # a long history, already counted
        finish(conn, 2000, "succeeded", NOW - timedelta(days=day))
    await rollup(dsn, NOW - timedelta(hours=1))
    finish(conn, 7, "succeeded", NOW - timedelta(minutes=30))
    finish(conn, 3, "dead", NOW - timedelta(minutes=20))
    mark = conn.execute("SELECT upto FROM pgsched.job_stats_watermark").fetchone()
    assert mark is not None
    for analyze in (False, True):  # without statistics (a fresh table) and with them
        if analyze:
            conn.execute("ANALYZE pgsched.jobs")
        with conn.transaction(force_rollback=True):
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + query("job_stats_rollup"), {"since": mark["upto"], "upto": NOW}
            ).fetchone()
        assert plan is not None
        scans = list(_nodes(plan["QUERY PLAN"][0]["Plan"]))
        jobs_scans = [n for n in scans if str(n.get("Relation Name", "")).startswith("jobs_")]  # its partitions
        assert jobs_scans and all(n["Node Type"] != "Seq Scan" for n in jobs_scans)
        used = {n.get("Index Name") for n in scans if "Index Name" in n}
        assert used and all(str(name).endswith("finished_at_idx") for name in used), (
            used
        )  # jobs_finished_idx, per partition
        assert sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in jobs_scans) == 10  # not the 6,000 old rows


def _nodes(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_history_older_than_seven_days_is_dropped(dsn: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgsched.job_stats_minute (minute, queue, task, succeeded)"
        " VALUES (%s, 'q', 't', 1), (%s, 'q', 't', 1)",
        [NOW - timedelta(days=8), NOW - timedelta(days=6)],
    )
    finish(conn, 1, "succeeded", NOW - timedelta(minutes=1))
    await rollup(dsn, NOW)
    assert [r["minute"] for r in minutes(conn)] == [
        NOW - timedelta(days=6),
        NOW.replace(second=0) - timedelta(minutes=1),
    ]


async def test_the_leaders_prune_pass_rolls_history_up_before_it_deletes(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    finish(conn, 4, "succeeded", datetime.now(UTC) - timedelta(hours=2))
    pruner = Pruner(Settings(dsn=dsn, retention_succeeded_seconds=3600))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        assert await pruner.prune(leader) == 4
    assert [r["succeeded"] for r in minutes(conn)] == [4]


async def test_snoozes_and_a_tasks_own_cancel_are_not_counted_as_failures(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    at = NOW.replace(second=0) - timedelta(minutes=3)
    finish(conn, 1, "succeeded", at)
    conn.execute(
        """UPDATE pgsched.jobs SET errors = '[{"kind": "snooze", "error": "snoozed for 5s"},
                                             {"kind": "retry", "error": "retry after 2s"},
                                             {"error": "an entry from before kinds"}]'::jsonb"""
    )
    finish(conn, 1, "cancelled", at)
    conn.execute("""UPDATE pgsched.jobs SET errors = '[{"kind": "cancel", "error": "cancelled by the task"}]'::jsonb
                     WHERE state = 'cancelled'""")
    await rollup(dsn, NOW)
    (row,) = minutes(conn)
    assert (row["succeeded"], row["cancelled"], row["failed"]) == (1, 1, 2)  # the retry and the kind-less entry
