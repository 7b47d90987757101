"""Queue counts for /queues and /metrics cost the same at any table size: exact from the hot indexes
while a state holds at most ``cap`` rows, else the leader's ``pgsched.queue_counts`` (with its age)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from pgsched.config import Settings
from pgsched.maintenance import Pruner
from pgsched.queries import query
from tests.support.plans import explain_executed, prepare, report_plans, rows_visited

CAP = 50
BULK = 2000


def _load(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgsched.jobs (queue, task, run_at) SELECT 'bulk', 't', now() - interval '1 minute'"
        " FROM generate_series(1, %s)",
        (BULK,),
    )
    conn.execute(
        "INSERT INTO pgsched.jobs (queue, task, state, finished_at, attempt)"
        " SELECT CASE WHEN g <= 5 THEN 'mail' ELSE 'bulk' END, 't', 'dead', now(), 1 FROM generate_series(1, 300) g"
    )
    conn.execute("ANALYZE pgsched.jobs")


def _counts(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(query("queue_counts_list"), {"cap": CAP, "now": None}).fetchall()
    return {r["queue"]: r for r in rows}


def test_counting_reads_a_bounded_number_of_job_rows_whatever_the_table_size(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    _load(conn)
    with psycopg.connect(dsn, autocommit=True) as session:
        report_plans(session)  # the statement runs in pgsched.queue_counts_list: its plan comes as a nested one
        names = prepare(session, "queue_counts_list")
        visited = rows_visited(explain_executed(session, "queue_counts_list", names, {"cap": CAP, "now": None}))
    # queued rows of two queues and the finished states, each read up to CAP + 1 rows; the running set is empty. At
    # least the bulk queue's first CAP + 1: the function's own plan was counted.
    assert CAP + 1 <= visited <= 8 * (CAP + 1)


def test_small_states_are_exact_and_large_ones_come_from_the_leaders_recount_with_its_age(
    conn: psycopg.Connection[Any],
) -> None:
    _load(conn)
    before = _counts(conn)
    assert before["bulk"]["due"] == CAP + 1 and before["bulk"]["counts_age_seconds"] is None  # nothing recounted yet
    conn.execute(query("queue_counts_refresh"), {"now": None})
    after = _counts(conn)
    assert (after["bulk"]["due"], after["bulk"]["dead"], after["mail"]["dead"]) == (BULK, 295, 5)
    assert after["bulk"]["counts_age_seconds"] >= 0
    conn.execute("INSERT INTO pgsched.jobs (queue, task) VALUES ('tiny', 't'), ('tiny', 't')")
    conn.execute("INSERT INTO pgsched.jobs (queue, task) SELECT 'bulk', 't' FROM generate_series(1, 10)")
    latest = _counts(conn)
    assert latest["tiny"]["due"] == 2  # few rows: exact at once
    assert latest["bulk"]["due"] == BULK  # many rows: the recount, until the leader counts again


async def test_the_leaders_prune_recounts_the_queues(dsn: str, conn: psycopg.Connection[Any]) -> None:
    _load(conn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        await Pruner(Settings(dsn=dsn)).prune(leader)
    rows = conn.execute("SELECT queue, due, dead FROM pgsched.queue_counts ORDER BY queue").fetchall()
    assert [(r["queue"], r["due"], r["dead"]) for r in rows] == [("bulk", BULK, 295), ("mail", 0, 5)]


def test_the_queues_endpoint_says_whether_its_counts_are_exact(client: httpx.Client) -> None:
    client.post("/jobs", json={"task": "t", "queue": "emails"})
    items = client.get("/queues").json()["items"]
    assert [(q["queue"], q["due"], q["counts_age_seconds"]) for q in items] == [("emails", 1, None)]
