"""Every function of schema pgsched pins ``search_path = pg_catalog, pgsched``, so a caller's
search_path (say a schema with its own ``jobs`` or ``now()``) cannot redirect names inside it."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from pgsched.queries import query

PINNED = "search_path=pg_catalog, pgsched"


def test_every_function_in_schema_pgsched_sets_its_search_path(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """SELECT p.oid::regprocedure::text AS name, p.proconfig AS config
             FROM pg_proc p WHERE p.pronamespace = 'pgsched'::regnamespace ORDER BY 1"""
    ).fetchall()
    assert rows, "no functions found in schema pgsched"
    unpinned = [r["name"] for r in rows if PINNED not in (r["config"] or [])]
    assert unpinned == []


# The worker's statements, run for every claim, finish or beat.
HOT = ("job_claim_batch", "job_finish_many", "job_progress_many", "job_release_leased", "job_reconcile",
       "job_cancel_requested", "job_next_due_in", "worker_heartbeat", "worker_wait_mark")  # fmt: skip
# Called only on a rare branch (a claimed job past its deadline): its cost is paid only then.
RARE = {"expired_entry"}


def test_no_hot_statement_calls_a_function_planned_anew_in_every_statement(conn: psycopg.Connection[Any]) -> None:
    """A LANGUAGE sql function with a pinned search_path is never inlined, and PostgreSQL before 18 parses, analyzes
    and plans its body again in every statement that calls it (pgsched.new_lease in the claim: ~70 us a claim, ~17 us
    as PL/pgSQL, whose plan the session keeps). An IMMUTABLE one without arguments is folded into the cached plan."""
    called = {name for q in HOT for name in re.findall(r"pgsched\.(\w+)\(", query(q))} - RARE
    rows = conn.execute(
        """SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'pgsched'::regnamespace AND p.proname = ANY(%s)
              AND l.lanname = 'sql' AND p.proconfig IS NOT NULL AND NOT (p.provolatile = 'i' AND p.pronargs = 0)""",
        [sorted(called)],
    ).fetchall()
    assert "new_lease" in called
    assert [r["proname"] for r in rows] == []
