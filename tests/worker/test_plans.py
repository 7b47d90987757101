"""The hot statements stay cheap whatever the statistics said when they were planned.

A worker keeps one generic plan per prepared statement, made at its first call. If ``pgsched.jobs``
was empty and freshly analyzed then, a sequential scan or a full index scan looked free and stayed
the plan under a large backlog (one claim of 100 jobs cost 300 ms at 20,000 queued jobs), and the
finish joined every running job to every id of its batch (one flush took seconds with 100,000
running); and statistics taken while the whole backlog was queued (autoanalyze runs during every
backlog) said no row was running, so the kept plan of the finish drove it from the partial index
of running jobs and scanned the running set once per id; and a VACUUM after a drain to nothing left
reltuples 0, so the finish expected one job, read the jobs first and rescanned its whole batch once per
job. These tests plan each hot statement, with generic and with custom plans, in every statistics
state of tests/support/plan_table.py, then run it on a realistic table and count the rows it visits (and
the pairs a join filter compared): that count, not a timing, must stay near the batch size.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.queries import query
from tests.support.plan_table import (
    BATCH,
    QUEUED,
    RUNNING,
    STATES,
    analyze,
    load,
    plan_sessions,
)
from tests.support.plans import (
    explain_executed,
    jit_compiled,
    prepare,
    relations_read,
    report_plans,
    rows_visited,
    scans,
)

# The hot statements, each with the bound on the rows it may visit: a small multiple of its batch.
# The reaper's batch is the running set (it reads every running row once, never once per row).
HOT = {
    "job_claim_batch": 4 * BATCH,
    "job_finish_many": 4 * BATCH,
    "job_progress_many": 4 * BATCH,
    "job_release_leased": 4 * BATCH,
    "job_cancel_requested": 4 * BATCH,
    "job_trace_list": 4 * BATCH,
    "job_reconcile": 4 * BATCH,
    "job_next_due_in": 4 * BATCH,
    "job_insert": 4 * BATCH,
    "result_get": 4 * BATCH,
    # The default partition of finished jobs, read whole when too few of its jobs are due for deletion (the README
    # says so: stragglers without a time partition); a sequential scan, seen since rows_visited counts partitions.
    "history_default_prune": QUEUED + RUNNING + BATCH,
    "job_expire_due": 4 * BATCH,
    # The running set, read through its index (with the entries the rolled-back statements above left), then once
    # more to write; a nested loop on workers counts it once more as rows removed by its join filter, where a hash
    # join's filter is not counted (the plan flips on width estimates alone: 0019's two run-key columns did it).
    "job_reap_lost": 3 * RUNNING + BATCH,
}
# Statements of live jobs: pgsched.jobs is partitioned by state, and these must never reach a partition of finished
# jobs (jobs_done_*), whose number grows with the history.
LIVE_ONLY = set(HOT) - {"job_insert", "result_get", "history_default_prune"}
# The partition of live jobs each side of the hot path never needs: the claim updates rows it locked in jobs_queued, and
# the finish rows that hold a lease, which only a running job does (migration 0050).
NEVER_READ = {"job_claim_batch": "jobs_running", "job_finish_many": "jobs_queued"}
# Run unprepared (planned at each call with its parameters, once per reaper pass): custom plans only.
UNPREPARED = {"job_expire_due"}


def _params(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    mine = conn.execute(
        "SELECT id, lease FROM pgsched.jobs WHERE state = 'running' AND worker_id = 1 ORDER BY id DESC LIMIT %s",
        (BATCH,),
    ).fetchall()
    ids, leases = [r[0] for r in mine], [r[1] for r in mine]
    return {
        "queues": ["default"],
        "limit": BATCH,
        "worker_id": 1,
        "now": None,
        "running": ids[: BATCH // 10],
        "free": BATCH // 10,
        "ids": ids,
        "leases": leases,
        "outcomes": ["succeeded"] * len(ids),
        "results": [None] * len(ids),
        "errors": [None] * len(ids),
        "delays": [0.0] * len(ids),
        "finals": [False] * len(ids),
        "snooze_limits": [0] * len(ids),
        "fractions": [0.5] * len(ids),
        "messages": ["halfway"] * len(ids),
        "extends": [30.0] * len(ids),
        "lease": 30.0,
        "grace": 30.0,  # the usual pass: no worker lost, the running set read once
        "max_losses": 3,
        "state": "succeeded",
        "retention": 3600.0,
        "job_id": ids[0],
        "task": "noop",
        "args": "{}",
        "queue": "default",
        "priority": 0,
        "run_at": None,
        "run_key": None,
        "run_key_scope": None,
        "run_key_period": None,
        "on_conflict": "existing",
        "max_attempts": 5,
        "timeout": None,
        "concurrency_key": None,
        "concurrency_limit": None,
        "tags": [],
        "meta": "{}",
        "expires_at": None,
        "delay": None,
    }


@pytest.mark.parametrize("stats", list(STATES))
def test_every_hot_statement_visits_about_a_batch_of_rows_whatever_the_statistics_said(dsn: str, stats: str) -> None:
    with plan_sessions(dsn, stats, worker=True) as sessions:
        # a generic plan is made at once, and kept
        prepared = {
            plans: {name: prepare(conn, name) for name in HOT if plans == "custom" or name not in UNPREPARED}
            for plans, conn in sessions.items()
        }
        load(sessions["generic"])  # no ANALYZE: as under a backlog that grew faster than autovacuum
        params = _params(sessions["generic"])
        assert len(params["ids"]) == BATCH
        explained = {
            plans: {name: explain_executed(conn, name, names, params) for name, names in prepared[plans].items()}
            for plans, conn in sessions.items()
        }
    for plans, plan_of in explained.items():
        _visit_about_a_batch(f"{stats}, {plans} plans", plan_of)


def _visit_about_a_batch(label: str, explained: dict[str, dict[str, Any]]) -> None:
    visited = {name: rows_visited(plan) for name, plan in explained.items()}
    over = {name: n for name, n in visited.items() if n > HOT[name]}
    assert not over, f"{label}: rows visited {visited}"
    history = {
        name: sorted(r for r in relations_read(plan) if r.startswith("jobs_done"))
        for name, plan in explained.items()
        if name in LIVE_ONLY
    }
    assert not any(history.values()), f"{label}: live statements read finished jobs {history}"
    needless = {name: table for name, table in NEVER_READ.items() if table in relations_read(explained[name])}
    assert not needless, f"{label}: partitions read for nothing {needless}"
    # The claim's update reads the rows its candidates locked by tuple id (0051), never through an index of jobs_queued.
    claim_reads = {scan for scan in scans(explained["job_claim_batch"]) if scan[1].startswith("jobs_queued")}
    assert ("Tid Scan", "jobs_queued") in claim_reads, f"{label}: {sorted(claim_reads)}"
    assert not {s for s in claim_reads if s[1].startswith("jobs_queued_pkey")}, f"{label}: {claim_reads}"
    compiled = {name: n for name, plan in explained.items() if (n := jit_compiled(plan))}
    assert not compiled, f"{label}: JIT-compiled statements {compiled}"


def test_the_finish_and_the_claim_do_their_whole_batch(dsn: str) -> None:
    """The row counts above are not vacuous: planned on the empty table, both still write a full batch. And the
    claim reads its locked rows by TID even where a server turns TID scans off: that only adds a cost, and the
    worker's sessions leave no cheaper way (sequential scans are off, and no index matches a ctid)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (1, 'test', 1)")
        analyze(conn)
        conn.execute("SET enable_tidscan = off")  # as a server-wide setting would
        conn.execute(query("worker_session_setup"))
        prepared = {name: prepare(conn, name) for name in ("job_claim_batch", "job_finish_many")}
        load(conn)
        params = _params(conn)
        explained = {name: explain_executed(conn, name, names, params) for name, names in prepared.items()}
    rows = {name: plan["Actual Rows"] for name, plan in explained.items()}
    assert rows == {"job_claim_batch": BATCH, "job_finish_many": BATCH}
    assert ("Tid Scan", "jobs_queued") in scans(explained["job_claim_batch"])


def test_the_next_due_time_is_read_through_the_claim_index(dsn: str) -> None:
    """Kept from an empty table too; it runs only when a worker goes idle (no job is due)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")
        conn.execute(query("worker_session_setup"))
        names = prepare(conn, "job_next_due_in")
        load(conn)
        row = conn.execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE job_next_due_in({', '.join(['NULL'] * len(names))})"
        ).fetchone()
    assert row is not None
    text = str(row[0])
    # Either partial index of queued jobs keeps it keyed: the claim index, or (since migration 0009) the
    # run_at-ordered jobs_waiting_idx, which reads only jobs not yet due.
    assert "Seq Scan" not in text and ("jobs_claim_idx" in text or "jobs_waiting_idx" in text), text


def _waiter_probes(node: dict[str, Any]) -> int:
    """How many times the plan looked into result_waiters (scans times their loops)."""
    here = "result_waiters" in (node.get("Relation Name"), node.get("Alias"))
    own = int(node.get("Actual Loops", 0)) if here else 0
    return own + sum(_waiter_probes(child) for child in node.get("Plans", []))


def test_the_finish_notify_for_result_waiters_costs_one_probe_when_nobody_waits_and_one_per_job_otherwise(
    dsn: str,
) -> None:
    """Planned (and kept) while result_waiters was empty, then run with 20,000 waiters of other jobs."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")
        conn.execute("VACUUM ANALYZE pgsched.result_waiters")
        conn.execute(query("worker_session_setup"))
        report_plans(conn)
        names = prepare(conn, "job_finish_many")
        load(conn)
        params = _params(conn)
        idle_plan = explain_executed(conn, "job_finish_many", names, params)  # the plan is made now, and kept
        conn.execute(
            "INSERT INTO pgsched.result_waiters (job_id, backend_pid)"
            " SELECT g, 1 FROM generate_series(1, %s) g UNION ALL SELECT unnest(%s::bigint[]), 2",
            (QUEUED, params["ids"][:10]),
        )
        plan = explain_executed(conn, "job_finish_many", names, params)
    assert idle_plan["Actual Rows"] == BATCH and _waiter_probes(idle_plan) == 1, idle_plan
    assert plan["Actual Rows"] == BATCH, plan
    assert _waiter_probes(plan) <= 1 + BATCH, plan
    assert rows_visited(plan) <= 4 * BATCH, f"job_finish_many visited {rows_visited(plan)} rows with waiters: {plan}"
