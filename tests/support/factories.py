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


# Task names the API, CLI and dashboard tests enqueue: published as if a worker serving them were deployed.
TEST_TASKS = (
    *("t", "noop", "backup", "seed", "ok", "a", "b", "c", "send_email", "piped", "bulk", "before", "hello"),
    *("pgsched.http", "pgsched.shell"),
)


def register_tasks(dsn: str, *names: str, queue: str = "default", priority: int = 0, max_attempts: int = 5) -> int:
    """Publish ``names`` in the task registry under a new worker row (as a worker's liveness does); its id."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("INSERT INTO pgsched.workers (host, pid) VALUES ('test', 0) RETURNING id").fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO pgsched.tasks (name, worker_id, queue, priority, max_attempts)"
            " SELECT n, %s, %s, %s, %s FROM unnest(%s::text[]) AS n",
            (row[0], queue, priority, max_attempts, list(names)),
        )
        return int(row[0])
