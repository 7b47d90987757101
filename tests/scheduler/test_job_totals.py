"""The cluster totals the rollup pass keeps: counters per queue and task, histogram buckets, only ever added to."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgsched import job_stats
from pgsched.queries import query
from tests.support.rollup import rollup_caught_up

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
AT = NOW - timedelta(minutes=5)


def finish(conn: psycopg.Connection[Any], state: str, *, kinds: tuple[str, ...] = (), attempt: int = 1,
           run: float | None = 0.3, wait: float = 0.02, queue: str = "default", task: str = "t") -> None:  # fmt: skip
    """One job finished at AT after ``attempt`` attempts, one errors entry per kind; ``run`` None: never started."""
    errors = json.dumps([{"attempt": i + 1, "error": "e", "kind": kind} for i, kind in enumerate(kinds)])
    conn.execute(
        """INSERT INTO pgsched.jobs (task, queue, state, attempt, max_attempts, run_at, started_at, finished_at, errors)
           VALUES (%(task)s, %(queue)s, %(state)s::pgsched.job_state, %(attempt)s, 10,
                   %(at)s::timestamptz - make_interval(secs => coalesce(%(run)s::float8, 0) + %(wait)s),
                   CASE WHEN %(run)s::float8 IS NOT NULL THEN %(at)s::timestamptz - make_interval(secs => %(run)s) END,
                   %(at)s, %(errors)s::jsonb)""",
        {"task": task, "queue": queue, "state": state, "attempt": attempt, "at": AT, "run": run, "wait": wait,
         "errors": errors},
    )  # fmt: skip


def totals(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["queue"], r["task"]): r for r in conn.execute(query("job_totals_list")).fetchall()}


def buckets(conn: psycopg.Connection[Any], metric: str) -> dict[float, int]:
    rows = conn.execute(query("job_total_buckets_list")).fetchall()
    return {r["le"]: r["jobs"] for r in rows if r["metric"] == metric}


async def test_each_outcome_adds_to_the_counters_a_worker_would_count(dsn: str, conn: psycopg.Connection[Any]) -> None:
    finish(conn, "succeeded")
    finish(conn, "succeeded", kinds=("exception", "timeout"), attempt=3)  # failed twice, retried twice
    finish(conn, "dead", kinds=("exception", "exception", "exception"), attempt=3)  # the last failure is not retried
    finish(conn, "cancelled", kinds=("cancel",))  # cancelled while running
    finish(conn, "cancelled", kinds=("exception",), attempt=1)  # failed once, cancelled while waiting to retry
    finish(conn, "cancelled", attempt=0, run=None)  # cancelled before it ever ran
    finish(conn, "dead", kinds=("exception", "worker_lost"), attempt=2)  # buried by the reaper
    finish(conn, "succeeded", kinds=("snooze", "snooze", "lease_expired"), attempt=2)  # 2 snoozed attempts given back
    finish(conn, "dead", kinds=("retry", "snooze_limit"), attempt=2)  # a Retry, then one snooze too many
    finish(conn, "dead", kinds=("discard",), attempt=1)  # Discard: dead at once
    finish(conn, "cancelled", kinds=("expired",), attempt=0, run=None)  # not started by its expires_at
    await rollup_caught_up(dsn, now=NOW)
    row = totals(conn)[("default", "t")]
    assert {k: row[k] for k in ("started", "succeeded", "failed", "retried", "dead", "cancelled", "lost")} == {
        "started": 1 + 3 + 3 + 1 + 1 + 0 + 2 + (2 + 2) + 2 + 1,
        "succeeded": 3,
        "failed": 2 + 3 + 1 + 1 + 2 + 1,
        "retried": 2 + 2 + 1 + 1 + 1,
        "dead": 4,
        "cancelled": 4,
        "lost": 2,
    }
    # Timed: the jobs whose last attempt ran to an end in a worker (three succeeded, the three dead that failed,
    # the one cancelled while running); not the one cancelled while waiting, the never-run one, the reaped one.
    assert sum(buckets(conn, "duration").values()) == 7
    assert abs(row["duration_sum"] - 7 * 0.3) < 1e-6
    assert abs(row["wait_sum"] - 7 * 0.02) < 1e-6


async def test_a_value_lands_in_the_smallest_bucket_at_or_above_it(dsn: str, conn: psycopg.Connection[Any]) -> None:
    for run in (0.0, 0.0005, 0.0006, 0.3, 1.0, 299.0, 1000.0):
        finish(conn, "succeeded", run=run, wait=0.0)
    await rollup_caught_up(dsn, now=NOW)
    assert buckets(conn, "duration") == {0.0005: 2, 0.001: 1, 0.5: 1, 1.0: 1, 300.0: 1, float("inf"): 1}
    assert buckets(conn, "wait") == {0.0005: 7}


async def test_totals_only_grow_and_each_job_is_counted_once(dsn: str, conn: psycopg.Connection[Any]) -> None:
    finish(conn, "succeeded", queue="emails", task="send")
    await rollup_caught_up(dsn, now=NOW)
    await rollup_caught_up(dsn, now=NOW + timedelta(seconds=30))  # a second pass over the same rows counts nothing
    assert totals(conn)[("emails", "send")]["succeeded"] == 1
    conn.execute("DELETE FROM pgsched.jobs")  # retention pruned the jobs: the totals stay
    conn.execute("DELETE FROM pgsched.job_stats_minute")
    finish(conn, "succeeded", queue="emails", task="send")
    conn.execute("UPDATE pgsched.jobs SET finished_at = %s", [NOW + timedelta(seconds=40)])
    await rollup_caught_up(dsn, now=NOW + timedelta(minutes=2))
    assert totals(conn)[("emails", "send")]["succeeded"] == 2
    assert sum(buckets(conn, "duration").values()) == 2


async def test_the_totals_read_only_the_new_rows_through_the_finished_index(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """INSERT INTO pgsched.jobs (task, state, attempt, run_at, started_at, finished_at)
           SELECT 't', 'succeeded', 1, %(at)s, %(at)s, %(at)s FROM generate_series(1, 3000)""",
        {"at": NOW - timedelta(days=1)},
    )  # a long history, already counted
    await rollup_caught_up(dsn, now=NOW - timedelta(hours=1))
    for _ in range(4):
        finish(conn, "succeeded")
    mark = conn.execute(query("job_stats_watermark_get")).fetchone()
    assert mark is not None
    for analyze in (False, True):  # without statistics (a fresh table) and with them
        if analyze:
            conn.execute("ANALYZE pgsched.jobs")
        with conn.transaction(force_rollback=True):
            params = {"since": mark["upto"], "upto": NOW, "bounds": [0.1, 1.0]}
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query("job_totals_rollup"), params).fetchone()
        assert plan is not None
        scans = list(_nodes(plan["QUERY PLAN"][0]["Plan"]))
        jobs_scans = [n for n in scans if str(n.get("Relation Name", "")).startswith("jobs_")]  # its partitions
        assert jobs_scans and all(n["Node Type"] != "Seq Scan" for n in jobs_scans)
        used = {str(n.get("Index Name")) for n in jobs_scans}
        assert all(name.endswith("finished_at_idx") for name in used), used  # jobs_finished_idx, per partition
        assert sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in jobs_scans) == 4  # not the 3,000 old rows


def _nodes(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_a_rollup_past_its_time_budget_says_it_is_behind_and_the_next_call_goes_on(
    dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first rollup counts 7 days back in passes of 6 hours; with no time budget a call makes one pass, says it is
    behind, and the next call goes on from there, until the job of 5 minutes ago is counted."""
    monkeypatch.setattr(job_stats, "PASS_BUDGET_SECONDS", 0.0)
    finish(conn, "succeeded")
    rollup = job_stats.JobStatsRollup()
    calls = 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as leader:
        while True:
            await rollup.rollup(leader, now=NOW)
            calls += 1
            if not rollup.behind:
                break
            assert ("default", "t") not in totals(conn)
    assert calls == job_stats.STATS_KEEP // job_stats.MAX_SPAN  # 28 passes of 6 hours, the last cut at the settle delay
    assert totals(conn)[("default", "t")]["succeeded"] == 1
