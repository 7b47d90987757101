"""VACUUM leaves the empty pages at the end of pgsched.jobs_live in place (migration 0033): truncating them takes an
ACCESS EXCLUSIVE lock that stood in the way of the workers' claims for about a minute at each autovacuum of a busy
queue. The next backlog reuses the pages."""

from __future__ import annotations

from typing import Any

import psycopg

_SIZE = "SELECT pg_relation_size('pgsched.jobs_live') AS bytes"


def test_vacuum_keeps_the_empty_pages_of_the_live_jobs(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgsched.jobs (queue, task, args, priority, max_attempts)"
        " SELECT 'default', 'noop', '{}', 0, 5 FROM generate_series(1, 5000)"
    )
    conn.execute("DELETE FROM pgsched.jobs_live")
    before = conn.execute(_SIZE).fetchone()
    assert before is not None and before["bytes"] > 100 * 8192
    conn.execute("VACUUM pgsched.jobs_live")
    assert conn.execute(_SIZE).fetchone() == before
    conn.execute("VACUUM (TRUNCATE) pgsched.jobs_live")  # by hand, the space still goes back
    after = conn.execute(_SIZE).fetchone()
    assert after is not None and after["bytes"] == 0
