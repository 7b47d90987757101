"""The chart rollup caught up, as the leader's prune rounds leave it."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from pgsched.job_stats import JobStatsRollup


async def rollup_caught_up(dsn: str, *, now: datetime | None = None) -> None:
    """Roll the job stats up until nothing is left to count. One call stops after a time budget (a first one counts
    7 days back, 28 passes), and the leader calls again at its next round; on a loaded machine that takes several."""
    rollup = JobStatsRollup()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        await rollup.rollup(leader, now=now)
        while rollup.behind:
            await rollup.rollup(leader, now=now)
