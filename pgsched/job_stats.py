"""JobStatsRollup: the leader's pass that rolls finished jobs up into ``pgsched.job_stats_minute`` (charts)
and into the never-pruned cluster totals ``pgsched.job_totals`` and ``job_total_buckets`` (the API's /metrics).

Data layer, run on the leader's connection from the Pruner. Each pass reads only the jobs finished
since the watermark (jobs_finished_idx), so its cost follows the new rows, not the history; it adds
nothing to the claim or finish statements. A pass is one transaction: counts and watermark move together.
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
from pgsched.metrics import LATENCY_BUCKETS
from pgsched.queries import query

__all__ = ["STATS_KEEP", "JobStatsRollup"]

log = logging.getLogger(__name__)

STATS_KEEP = timedelta(days=7)
SETTLE = FINISH_SETTLE  # rows are counted once their finish is this old
MAX_SPAN = timedelta(hours=6)
PASS_BUDGET_SECONDS = 1.0
_BOUNDS = [float(b) for b in LATENCY_BUCKETS]  # the cluster histograms use the workers' buckets
PRUNE_LIMIT = 10_000  # rows of each table per pass: far more than a pass adds


class JobStatsRollup:
    """Counts jobs finished in (watermark, now - SETTLE] per minute and per hour, queue and task, and adds them to
    the cluster totals (same window, same transaction: each finished job is counted once); drops chart rows
    past 7 days. One pass reads at most MAX_SPAN of finish times and a call stops passing after
    PASS_BUDGET_SECONDS, so a first run over a long history is spread over several prune intervals
    instead of holding the leader's connection (an empty history catches up at once)."""

    behind = False  # the last call stopped at PASS_BUDGET_SECONDS with finish times still to count

    async def rollup(self, conn: psycopg.AsyncConnection[Any], *, now: datetime | None = None) -> int:
        """Passes until caught up or past PASS_BUDGET; returns how many minute rows they added to or created
        (``behind`` then says whether there is more to count)."""
        started = time.monotonic()
        total = 0
        while True:
            touched, self.behind = await self._pass(conn, now)
            total += touched
            if not self.behind or time.monotonic() - started > PASS_BUDGET_SECONDS:
                break
        if total:
            log.debug("rolled up job stats", extra={"event": "job_stats_rolled_up", "rows": total})
        return total

    async def _pass(self, conn: psycopg.AsyncConnection[Any], now: datetime | None) -> tuple[int, bool]:
        """One transaction over at most MAX_SPAN of finish times; (rows touched, still behind)."""
        params = {
            "now": now,
            "keep": STATS_KEEP.total_seconds(),
            "settle": SETTLE.total_seconds(),
            "span": MAX_SPAN.total_seconds(),
        }
        async with db.transaction_without_jit(conn), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_stats_watermark_lock"), params)
            window = await cur.fetchone()
            if window is None or window["upto"] <= window["since"]:  # None: another leader is mid-pass
                return 0, False
            rows = {"since": window["since"], "upto": window["upto"]}
            await cur.execute(query("job_stats_rollup"), rows)
            counted = await cur.fetchone()
            if counted and counted["minutes"]:  # no minute row touched: no job finished in the window
                await cur.execute(query("job_totals_rollup"), {**rows, "bounds": _BOUNDS})
            await cur.execute(query("job_stats_watermark_set"), {"upto": window["upto"]})
            await cur.execute(query("job_stats_prune"), {"before": window["keep_from"], "limit": PRUNE_LIMIT})
        return (int(counted["minutes"]) if counted else 0), bool(window["behind"])
