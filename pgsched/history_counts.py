"""HistoryCounter: the leader's pass that keeps ``pgsched.history_counts`` (finished jobs per partition of jobs_done,
queue and state) and writes ``pgsched.queue_counts`` from them, so that the counts never read the whole history.

Data layer, run on the leader's connection from the Pruner; it adds nothing to the claim or finish statements. A pass
adds the jobs finished since the watermark (jobs_finished_idx), then counts whole the partitions rows left otherwise
than by a drop (their statistics counters of deleted rows moved, or the leader's own delete marked them) and, within
PASS_BUDGET_SECONDS, those last counted more than RECOUNT_EVERY ago: the bound within which any drift heals.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import db
from pgsched.job_row import FINISH_SETTLE
from pgsched.queries import query

__all__ = ["PASS_BUDGET_SECONDS", "RECOUNT_EVERY", "SETTLE", "HistoryCounter"]

log = logging.getLogger(__name__)

# Jobs are added once their finish is this old (FINISH_SETTLE); younger ones are counted live by queue_counts_refresh
# (through jobs_finished_idx), so the counts lag nothing.
SETTLE = FINISH_SETTLE
# Every partition is counted whole at least this often (if the budget allows): what no statistics counter shows
# (a counter edited by hand, a job inserted straight into history with an old finished_at, a finished job's queue or
# state changed in place by hand) is right again by then.
RECOUNT_EVERY = timedelta(hours=6)
PASS_BUDGET_SECONDS = 1.0
_MAX_RECOUNTS = 64  # per pass, whatever the clock says


class HistoryCounter:
    """Adds newly finished jobs to the per-partition counters, recounts the partitions that need it (one transaction
    each, the changed ones first, at least one a pass), then writes pgsched.queue_counts."""

    async def refresh(self, conn: psycopg.AsyncConnection[Any], *, now: datetime | None = None) -> list[str]:
        """One pass; returns the partitions counted whole."""
        await self.history_counts_add(conn, now=now)
        recounted = await self.history_count_recount(conn, now=now)
        async with db.transaction_without_jit(conn), conn.cursor() as cur:
            await cur.execute(query("queue_counts_refresh"), {"now": now})
        return recounted

    async def history_counts_add(self, conn: psycopg.AsyncConnection[Any], *, now: datetime | None = None) -> int:
        """Add the jobs finished in (watermark, now - SETTLE] and move the watermark, in one transaction; returns how
        many counter rows were added to (0 as well when another leader holds the watermark)."""
        async with db.transaction_without_jit(conn), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("history_count_watermark_lock"), {"now": now, "settle": SETTLE.total_seconds()})
            window = await cur.fetchone()
            if window is None:
                return 0
            await cur.execute(query("history_counts_add"), {"since": window["since"], "upto": window["upto"]})
            row = await cur.fetchone()
        return int(row["added"]) if row else 0

    async def history_count_recount(
        self, conn: psycopg.AsyncConnection[Any], *, now: datetime | None = None
    ) -> list[str]:
        """Count whole, one transaction each, the partitions that need it until none does or the budget is spent."""
        deadline = time.monotonic() + PASS_BUDGET_SECONDS
        done: list[str] = []
        params = {"now": now, "every": RECOUNT_EVERY.total_seconds()}
        async with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(_MAX_RECOUNTS):
                async with db.transaction_without_jit(conn):
                    await cur.execute(query("history_count_recount"), params)
                    row = await cur.fetchone()
                if row is None:
                    break
                done.append(str(row["part"]))
                if time.monotonic() > deadline:
                    break
        if done:
            log.debug("recounted history partitions", extra={"event": "history_recounted", "partitions": done})
        return done
