"""The reaper and the reconcile read the running jobs only, however many jobs ran since jobs_running was last vacuumed.

Every job a worker runs leaves a dead row in jobs_running and a dead entry in jobs_running_idx until the next vacuum. In
a soak the leader's reaper read all of the live jobs (jobs_live then) each pass (a sequential scan, or a bitmap scan
visiting the heap page of every entry: 3,430 buffers for ~100 running jobs at 27.7 MB), and a worker's reconcile read
every entry its worker had made since the last vacuum (27 k -> 150 k a scan). The plan tests count rows, which miss
both: a scan of dead rows returns none. These count the scans and the buffers, on the table of
tests/support/plan_table.py after ``churn``, in each of its statistics states.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.queries import query
from tests.support.plan_table import BATCH, STATES, churn, load, plan_sessions, start_session
from tests.support.plans import buffers_used, explain_executed, jit_compiled, prepare, scans
from tests.support.waiting import wait_until

Conn = psycopg.Connection[Any]
# No worker lost (however slow the set-up): the usual pass, the running set read once.
REAP = {"lease": 3600.0, "grace": 3600.0, "max_losses": 3}
# How the live jobs may be read: the running jobs through their index, the lost ones again by id.
RUNNING_ONLY = {
    ("Index Scan", "jobs_running_idx"),
    ("Index Scan", "jobs_running_pkey"),
    ("Index Scan", "jobs_queued_pkey"),
}


def _session(conn: Conn, stats: str, plans: str) -> None:
    start_session(conn, stats)
    conn.execute(f"SET plan_cache_mode = force_{plans}_plan")


def _churn(dsn: str, conn: Conn) -> None:
    """Churn on a connection of its own, then wait until no snapshot can see the moved rows (a transaction of another
    database on this shared server can hold the horizon back a while): only then can a scan mark their entries dead,
    as it can in a soak a few seconds after each finish."""
    with psycopg.connect(dsn, autocommit=True) as finisher, finisher.transaction():
        churn(finisher)
        row = finisher.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    wait_until(
        lambda: _oldest_snapshot_xmin(conn) > row[0], timeout=60, message="a transaction holds the xmin horizon back"
    )


def _oldest_snapshot_xmin(conn: Conn) -> int:
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    return int(row[0]) if row else 0


def _live_reads(plan: dict[str, Any]) -> set[tuple[str, str]]:
    return {(kind, name) for kind, name in scans(plan) if name.startswith("jobs_")}


def _held(conn: Conn, worker_id: int) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT id, lease FROM pgsched.jobs WHERE state = 'running' AND worker_id = %s", (worker_id,)
    ).fetchall()
    return {"worker_id": worker_id, "ids": [r[0] for r in rows], "leases": [r[1] for r in rows]}


@pytest.mark.parametrize("stats", list(STATES))
def test_the_reaper_reads_the_live_jobs_only_through_the_running_index_whatever_the_statistics(
    dsn: str, stats: str
) -> None:
    """In the leader's session (no planner settings of its own); the plan is made before the table fills."""
    with plan_sessions(dsn, stats, worker=False) as sessions:
        names = {plans: prepare(conn, "job_reap_lost") for plans, conn in sessions.items()}
        load(sessions["generic"])
        _churn(dsn, sessions["generic"])
        explained = {
            plans: explain_executed(conn, "job_reap_lost", names[plans], REAP) for plans, conn in sessions.items()
        }
    for plans, plan in explained.items():
        assert plan["Actual Rows"] == 0, plan
        assert _live_reads(plan) <= RUNNING_ONLY, f"{stats}, {plans} plans: {sorted(scans(plan))}"
        assert not jit_compiled(plan), f"{stats}, {plans} plans: JIT-compiled {plan}"


def test_a_reconcile_after_a_reaper_pass_reads_only_its_running_jobs(dsn: str) -> None:
    """The leader reaps every ~2 s; its pass marks the entries of jobs that left dead, so a worker's reconcile then
    reads its running jobs (and the index pages), not every job it ran since the last vacuum."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        _session(conn, "analyzed mid-drain", "generic")
        reaper = prepare(conn, "job_reap_lost")
        conn.execute(query("worker_session_setup"))
        reconcile = prepare(conn, "job_reconcile")
        load(conn)
        _churn(dsn, conn)
        explain_executed(conn, "job_reap_lost", reaper, REAP)
        held = _held(conn, 1)
        plan = explain_executed(conn, "job_reconcile", reconcile, held, buffers=True)
    assert plan["Actual Rows"] == 0, plan
    assert buffers_used(plan) <= 2 * len(held["ids"]) + BATCH, f"{len(held['ids'])} running: {plan}"


def test_a_reconcile_marks_the_entries_of_its_jobs_that_left_so_the_next_one_skips_them(dsn: str) -> None:
    """Without a reaper pass between: the second reconcile reads its running jobs only (on a worker_id key, the
    btree merged a worker's entries into posting lists, and a list holding one running job could not be marked)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        _session(conn, "analyzed mid-drain", "generic")
        conn.execute(query("worker_session_setup"))
        reconcile = prepare(conn, "job_reconcile")
        load(conn)
        _churn(dsn, conn)
        held = _held(conn, 1)
        first = explain_executed(conn, "job_reconcile", reconcile, held, buffers=True)
        second = explain_executed(conn, "job_reconcile", reconcile, held, buffers=True)
    assert first["Actual Rows"] == second["Actual Rows"] == 0, second
    assert buffers_used(second) <= 2 * len(held["ids"]) + BATCH, f"first {buffers_used(first)}: {second}"
