"""ANALYZE of the job table stays cheap: every column of pgsched.jobs has a small statistics target (migration 0031).

The sample ANALYZE takes is 300 rows per unit of the largest target among the columns, so one column left at the
server's default (100) brings back the 30,000-row sample. This catches a column added later without its target.
"""

from __future__ import annotations

from typing import Any

import psycopg

PAYLOAD = {"args", "result", "errors", "progress_message"}


def _targets(conn: psycopg.Connection[Any], table: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT a.attname AS name, coalesce(a.attstattarget, -1) AS target FROM pg_attribute a"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [table],
    ).fetchall()
    return {r["name"]: r["target"] for r in rows}


def test_every_column_of_the_live_jobs_has_a_small_target(conn: psycopg.Connection[Any]) -> None:
    for table in ("pgsched.jobs", "pgsched.jobs_queued", "pgsched.jobs_running", "pgsched.jobs_done_default"):
        targets = _targets(conn, table)
        assert targets, table
        wide = {name: t for name, t in targets.items() if not 0 <= t <= 20}
        assert wide == {}, f"{table}: columns left at the default statistics target: {wide}"
        assert {name for name, t in targets.items() if t == 0} == PAYLOAD, table


def test_analyze_samples_6000_rows(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgsched.jobs (queue, task, args, priority, max_attempts)"
        " SELECT 'default', 'noop', '{}', 0, 5 FROM generate_series(1, 10000)"
    )
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("ANALYZE VERBOSE pgsched.jobs_queued")
    sampled = [n for n in notices if "rows in sample" in n]
    assert sampled and "6000 rows in sample" in sampled[-1], notices
