"""The by-id read of a job (pgsched.job_get, migration 0029) finds a job wherever it lives: jobs_queued, jobs_running,
any time partition of jobs_done (whose rows mix finish days when retentions differ) and jobs_done_default. Its statement
runs one generic, cached plan per session that probes each partition's id index and stops at the job's."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgsched.queries import query
from pgsched.store import JobStore
from tests.support.factories import insert_jobs
from tests.support.plans import report_plans, reported_plans


def _where(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT tableoid::regclass::text AS part FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row["part"])


def _history(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Three days of day partitions (queue audit keeps succeeded jobs 3 days, the default 1 day), and a job in each
    place a job can be: running, finished today (default queue), finished two days ago (audit: same partition as
    today's), finished beyond every partition (jobs_done_default)."""
    conn.execute("INSERT INTO pgsched.retention (queue, state, keep) VALUES ('audit', 'succeeded', '3 days')")
    conn.execute("SELECT pgsched.history_maintain(interval '1 day', now())")
    jobs = {
        "running": insert_jobs(conn, 1, state="running", started_at="now")[0],
        "today": insert_jobs(conn, 1)[0],
        "audit": insert_jobs(conn, 1, queue="audit")[0],
        "default": insert_jobs(conn, 1)[0],
    }
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [jobs["today"]])
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() - interval '2 days' WHERE id = %s",
        [jobs["audit"]],
    )
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'dead', finished_at = now(), purge_at = now() + interval '1000 days'"
        " WHERE id = %s",
        [jobs["default"]],
    )
    return jobs


def test_a_job_is_read_by_id_wherever_it_lives(conn: psycopg.Connection[Any], dsn: str) -> None:
    jobs = _history(conn)
    assert _where(conn, jobs["running"]) == "pgsched.jobs_running"
    assert _where(conn, jobs["today"]) == _where(conn, jobs["audit"])  # finished two days apart, one partition
    assert _where(conn, jobs["today"]).startswith("pgsched.jobs_done_2")
    assert _where(conn, jobs["default"]) == "pgsched.jobs_done_default"
    states = {"running": "running", "today": "succeeded", "audit": "succeeded", "default": "dead"}
    with ConnectionPool(dsn, min_size=1, max_size=1) as pool:
        store = JobStore(pool)
        for name, job_id in jobs.items():
            job = store.job_get(job_id)
            assert job is not None and job.id == job_id and job.state == states[name], name
        assert store.job_get(max(jobs.values()) + 1) is None
    for name, job_id in jobs.items():  # result() and the update paths read by id through the same function
        row = conn.execute(query("result_get"), {"job_id": job_id}).fetchone()
        assert row is not None and row["state"] == states[name]
        row = conn.execute(query("job_state_get"), {"id": job_id}).fetchone()
        assert row is not None and row["state"] == states[name]


def test_a_job_moved_from_the_default_partition_into_a_new_one_is_still_found(conn: psycopg.Connection[Any]) -> None:
    jobs = _history(conn)
    get = "SELECT id, state::text AS state FROM pgsched.job_get(%s)"
    assert conn.execute(get, [jobs["default"]]).fetchone() == {"id": jobs["default"], "state": "dead"}  # plan cached
    conn.execute("SELECT pgsched.history_partition_create(now() + interval '999 days', now() + interval '1001 days')")
    assert _where(conn, jobs["default"]).startswith("pgsched.jobs_done_2")
    assert conn.execute(get, [jobs["default"]]).fetchone() == {"id": jobs["default"], "state": "dead"}


def _inner_plans(conn: psycopg.Connection[Any], job_id: int) -> list[dict[str, Any]]:
    """The plans auto_explain reports for the statement inside pgsched.job_get on one call."""
    with reported_plans(conn, lambda text: "pgsched.jobs j" in text) as plans:
        conn.execute(query("job_get"), {"id": job_id}).fetchall()
    return plans


def _leaves(plan: dict[str, Any]) -> list[dict[str, Any]]:
    children = plan.get("Plans", [])
    return [leaf for child in children for leaf in _leaves(child)] if children else [plan]


@pytest.mark.parametrize("where", ["running", "today", "default"])
def test_the_by_id_read_probes_each_partition_by_index_with_a_generic_plan_and_stops_at_the_job(
    conn: psycopg.Connection[Any], where: str
) -> None:
    jobs = _history(conn)
    parts = conn.execute("SELECT count(*) AS n FROM pgsched.history_partitions").fetchone()
    assert parts is not None and parts["n"] >= 3
    report_plans(conn)
    (plan,) = _inner_plans(conn, jobs[where])
    leaves = _leaves(plan)
    assert plan["Node Type"] == "Limit"
    # jobs_queued, jobs_running, every time partition, jobs_done_default: each by its id index, with the parameter
    # (generic plan)
    assert len(leaves) == parts["n"] + 3
    assert {leaf["Node Type"] for leaf in leaves} == {"Index Scan"}
    assert {leaf["Index Cond"] for leaf in leaves} == {"(id = $1)"}
    visited = [leaf["Relation Name"] for leaf in leaves if leaf["Actual Loops"] > 0]
    assert visited[-1] == _where(conn, jobs[where]).removeprefix("pgsched.")  # none after the job's partition
    assert [leaf["Actual Rows"] for leaf in leaves] == [
        1 if leaf["Relation Name"] == visited[-1] else 0 for leaf in leaves
    ]


def test_the_by_id_statement_itself_plans_no_partition(conn: psycopg.Connection[Any]) -> None:
    _history(conn)
    conn.execute("PREPARE by_id(bigint) AS " + query("job_get").replace("%(id)s", "$1"))
    rows = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE by_id(1)").fetchall()
    plan = rows[0]["QUERY PLAN"][0]["Plan"]
    assert plan["Node Type"] == "Function Scan" and plan["Function Name"] == "job_get"
    assert "Plans" not in plan
