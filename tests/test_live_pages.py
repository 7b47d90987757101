"""VACUUM leaves the empty pages at the end of the live jobs' partitions in place (migrations 0033, 0046): truncating
them takes an ACCESS EXCLUSIVE lock that stood in the way of the workers' claims for about a minute at each autovacuum
of a busy queue. The next backlog reuses the pages."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest


@pytest.mark.parametrize("state", ["queued", "running"])
def test_vacuum_keeps_the_empty_pages_of_the_live_jobs(conn: psycopg.Connection[Any], state: str) -> None:
    table = f"pgsched.jobs_{state}"
    size = f"SELECT pg_relation_size('{table}') AS bytes"
    conn.execute(
        "INSERT INTO pgsched.jobs (queue, task, args, priority, max_attempts, state)"
        " SELECT 'default', 'noop', '{}', 0, 5, %s FROM generate_series(1, 5000)",
        [state],
    )
    conn.execute(f"DELETE FROM {table}")
    before = conn.execute(size).fetchone()
    assert before is not None and before["bytes"] > 100 * 8192
    conn.execute(f"VACUUM {table}")
    assert conn.execute(size).fetchone() == before
    conn.execute(f"VACUUM (TRUNCATE) {table}")  # by hand, the space still goes back
    after = conn.execute(size).fetchone()
    assert after is not None and after["bytes"] == 0
