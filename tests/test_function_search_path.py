"""Every function of schema pgsched pins ``search_path = pg_catalog, pgsched``, so a caller's
search_path (say a schema with its own ``jobs`` or ``now()``) cannot redirect names inside it."""

from __future__ import annotations

from typing import Any

import psycopg

PINNED = "search_path=pg_catalog, pgsched"


def test_every_function_in_schema_pgsched_sets_its_search_path(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """SELECT p.oid::regprocedure::text AS name, p.proconfig AS config
             FROM pg_proc p WHERE p.pronamespace = 'pgsched'::regnamespace ORDER BY 1"""
    ).fetchall()
    assert rows, "no functions found in schema pgsched"
    unpinned = [r["name"] for r in rows if PINNED not in (r["config"] or [])]
    assert unpinned == []
