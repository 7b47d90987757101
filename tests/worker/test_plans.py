"""The worker's statements stay cheap whatever the statistics said when they were planned.

A worker keeps one generic plan per prepared statement, made at its first call. If ``pgsched.jobs``
was empty and freshly analyzed then, a sequential scan or a full index scan looked free and stayed
the plan under a large backlog (one claim of 100 jobs cost 300 ms at 20,000 queued jobs), and the
finish joined every running job to every id of its batch (one flush took seconds with 100,000
running). These tests plan each statement as the worker does, on the empty, analyzed table, then run that
plan on a large table and count the rows it visits: that count, not a timing, must stay near the
batch size.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from pgsched.queries import query

QUEUED = 20_000
RUNNING = 5_000
BATCH = 100
_PARAM = re.compile(r"%\((\w+)\)s")
_COUNTED = ("jobs", "result_waiters")  # tables whose rows a plan visits (their indexes are named <table>_...)


def _prepare(conn: psycopg.Connection[Any], name: str) -> list[str]:
    """PREPARE the statement under its own name; return its parameter names in $n order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PARAM.sub(number, query(name)).replace("%%", "%")
    conn.execute(f"PREPARE {name} AS {text}")
    return names


def _visited(node: dict[str, Any]) -> int:
    """Rows the plan looked at: rows each node returned or filtered away, times its loops."""
    loops = int(node.get("Actual Loops", 1))
    seen = 0
    on_jobs = node.get("Relation Name") in _COUNTED or str(node.get("Index Name", "")).startswith(_COUNTED)
    if on_jobs and node["Node Type"] != "ModifyTable":
        seen += int(node["Actual Rows"]) * loops
        seen += int(node.get("Rows Removed by Filter", 0)) * loops
        seen += int(node.get("Rows Removed by Index Recheck", 0)) * loops
    seen += int(node.get("Rows Removed by Join Filter", 0)) * loops
    return seen + sum(_visited(child) for child in node.get("Plans", []))


def _load(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue) SELECT 'noop', 'default' FROM generate_series(1, %s)", (QUEUED,)
    )
    conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, worker_id, started_at)"
        " SELECT 'noop', 'default', 'running', 1, 1, now() FROM generate_series(1, %s)",
        (RUNNING,),
    )
    conn.execute(  # keyed jobs of another queue: the claim's probe for them must not read them all
        "INSERT INTO pgsched.jobs (task, queue, concurrency_key) SELECT 'noop', 'other', 'k' || g"
        " FROM generate_series(1, %s) g",
        (QUEUED // 4,),
    )


def _params(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    running = [
        r[0]
        for r in conn.execute("SELECT id FROM pgsched.jobs WHERE state = 'running' ORDER BY id DESC LIMIT %s", (BATCH,))
    ]
    return {
        "queues": ["default"],
        "limit": BATCH,
        "worker_id": 1,
        "now": None,
        "ids": running,
        "attempts": [1] * len(running),
        "outcomes": ["succeeded"] * len(running),
        "results": [None] * len(running),
        "errors": [None] * len(running),
        "delays": [0.0] * len(running),
        "finals": [False] * len(running),
    }


@pytest.mark.parametrize("name", ["job_claim_batch", "job_finish_many", "job_release_many", "job_cancel_requested"])
def test_a_statement_planned_as_the_worker_plans_it_visits_about_a_batch_of_rows(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")  # statistics now say: empty
        conn.execute(query("worker_session_setup"))
        names = _prepare(conn, name)  # the plan the worker keeps
        _load(conn)  # no ANALYZE: as under a backlog that grew faster than autovacuum
        params = _params(conn)
        with conn.transaction(force_rollback=True):
            placeholders = ", ".join(["%s"] * len(names))
            row = (
                psycopg.ClientCursor(conn)  # EXECUTE takes literals, not bound parameters
                .execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({placeholders})", [params[n] for n in names])
                .fetchone()
            )
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    assert plan["Actual Rows"] > 0 or name == "job_cancel_requested", plan
    assert _visited(plan) <= 4 * BATCH, f"{name} visited {_visited(plan)} rows for a batch of {BATCH}: {plan}"


def test_the_next_due_time_is_read_through_the_claim_index(dsn: str) -> None:
    """Kept from an empty table too; it runs only when a worker goes idle (no job is due)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")
        conn.execute(query("worker_session_setup"))
        names = _prepare(conn, "job_next_due_in")
        _load(conn)
        row = conn.execute(
            f"EXPLAIN (FORMAT JSON) EXECUTE job_next_due_in({', '.join(['NULL'] * len(names))})"
        ).fetchone()
    assert row is not None
    text = str(row[0])
    assert "Seq Scan" not in text and "jobs_claim_idx" in text, text


def _waiter_probes(node: dict[str, Any]) -> int:
    """How many times the plan looked into result_waiters (scans times their loops)."""
    here = "result_waiters" in (node.get("Relation Name"), node.get("Alias"))
    own = int(node.get("Actual Loops", 0)) if here else 0
    return own + sum(_waiter_probes(child) for child in node.get("Plans", []))


def test_the_finish_notify_for_result_waiters_costs_one_probe_when_nobody_waits_and_one_per_job_otherwise(
    dsn: str,
) -> None:
    """Planned (and kept) while result_waiters was empty, then run with 20,000 waiters of other jobs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")
        conn.execute("VACUUM ANALYZE pgsched.result_waiters")
        conn.execute(query("worker_session_setup"))
        names = _prepare(conn, "job_finish_many")
        _load(conn)
        params = _params(conn)
        args = [params[n] for n in names]
        explain = f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE job_finish_many({', '.join(['%s'] * len(names))})"
        cur = psycopg.ClientCursor(conn)
        with conn.transaction(force_rollback=True):
            idle = cur.execute(explain, args).fetchone()  # the plan is made now, and kept
        conn.execute(
            "INSERT INTO pgsched.result_waiters (job_id, backend_pid)"
            " SELECT g, 1 FROM generate_series(1, %s) g UNION ALL SELECT unnest(%s::bigint[]), 2",
            (QUEUED, params["ids"][:10]),
        )
        with conn.transaction(force_rollback=True):
            busy = cur.execute(explain, args).fetchone()
    assert idle is not None and busy is not None
    idle_plan: dict[str, Any] = idle[0][0]["Plan"]
    plan: dict[str, Any] = busy[0][0]["Plan"]
    assert idle_plan["Actual Rows"] == BATCH and _waiter_probes(idle_plan) == 1, idle_plan
    assert plan["Actual Rows"] == BATCH, plan
    assert _waiter_probes(plan) <= 1 + BATCH, plan
    assert _visited(plan) <= 4 * BATCH, f"job_finish_many visited {_visited(plan)} rows with waiters: {plan}"
