"""The worker's statements keep index plans whatever the statistics said when they were planned.

A worker prepares its statements once and keeps their generic plans. Planned while
``pgsched.jobs`` was empty and freshly analyzed, a sequential scan (or a full index scan with a
join filter) looked free, and stayed the plan under a large backlog: one claim of 100 jobs cost
300 ms at 20,000 queued jobs. Every scan of ``jobs`` in these plans must be reached by a key.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from pgsched.queries import query

# Partial indexes whose whole size is bounded by the jobs running now (never by the backlog).
BOUNDED_INDEXES = {"jobs_running_idx"}
WORKER_STATEMENTS = [
    "job_claim_batch",
    "job_finish_many",
    "job_release_many",
    "job_next_due_in",
    "job_cancel_requested",
]
_PARAM = re.compile(r"%\((\w+)\)s")


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    scan = node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    found = [node] if scan else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


def _generic_plan(conn: psycopg.Connection[Any], name: str) -> dict[str, Any]:
    """PREPARE the statement as the worker does and EXPLAIN the plan it would keep."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PARAM.sub(number, query(name)).replace("%%", "%")
    conn.execute(f"PREPARE stmt_{name} AS {text}")
    nulls = ", ".join(["NULL"] * len(names))
    row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE stmt_{name}({nulls})").fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


@pytest.mark.parametrize("name", WORKER_STATEMENTS)
def test_plans_planned_on_an_empty_analyzed_table_reach_jobs_by_a_key(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgsched.jobs")  # statistics now say: empty
        conn.execute(query("worker_session_setup"))
        plan = _generic_plan(conn, name)
    scans = _scans(plan)
    assert scans, f"{name}: no scan of pgsched.jobs in the plan"
    for scan in scans:
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), (name, scan["Node Type"])
        if scan["Node Type"] != "Bitmap Heap Scan" and scan.get("Index Name") not in BOUNDED_INDEXES:
            assert "Index Cond" in scan, f"{name}: {scan['Node Type']} of {scan.get('Index Name')} has no key"
