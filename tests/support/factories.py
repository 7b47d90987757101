"""Row factories: put jobs straight into pgsched.jobs with plain SQL, for tests of the readers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def insert_jobs(
    conn: psycopg.Connection[Any], n: int, *, task: str = "noop", queue: str = "default", **cols: Any
) -> list[int]:
    """Insert n queued jobs; extra columns (priority, run_at, state, ...) apply to all of them."""
    names = ["task", "queue", *cols]
    values = [task, queue, *(Jsonb(v) if isinstance(v, dict | list) else v for v in cols.values())]
    placeholders = ", ".join(["%s"] * len(names))
    sql = (
        f"INSERT INTO pgsched.jobs ({', '.join(names)}) SELECT {placeholders} FROM generate_series(1, %s) RETURNING id"
    )
    rows = conn.execute(sql, [*values, n]).fetchall()  # type: ignore[call-overload]
    return [r[0] if isinstance(r, tuple) else r["id"] for r in rows]


def result_waiters(conn: psycopg.Connection[Any], job_id: int | None = None) -> int:
    """Rows in pgsched.result_waiters (of one job, or all)."""
    row = conn.execute(
        "SELECT count(*) FROM pgsched.result_waiters WHERE %(id)s::bigint IS NULL OR job_id = %(id)s::bigint",
        {"id": job_id},
    ).fetchone()
    assert row is not None
    return int(next(iter(row.values())) if isinstance(row, dict) else row[0])
