"""The leader's rollups and counts read many rows once each: they run without JIT, which past jit_above_cost compiled
them at every prune (1.2 s of LLVM work for a 160,000-job rollup that ran in 0.4 s on PostgreSQL 15). The embedded
server has no JIT; the machine's server does, so the plans auto_explain reports tell whether a statement was
compiled."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched.history_counts import HistoryCounter
from pgsched.job_stats import JobStatsRollup
from tests.support.factories import insert_jobs
from tests.support.plans import jit_compiled, report_plans_async, reported_plans


async def test_the_leaders_rollups_and_counts_are_never_jit_compiled(dsn: str, conn: psycopg.Connection[Any]) -> None:
    available = conn.execute("SELECT pg_jit_available() AS jit").fetchone()
    if not (available and available["jit"]):
        pytest.skip("this server has no JIT")
    insert_jobs(conn, 50)
    insert_jobs(
        conn,
        200,
        state="succeeded",
        attempt=1,
        run_at="2026-01-01T00:00:00Z",
        started_at="2026-01-01T00:00:01Z",
        finished_at="2026-01-01T00:00:02Z",
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        await report_plans_async(leader)
        for setting in ("jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost"):
            await leader.execute(f"SET {setting} = 0")  # every statement would be compiled, however small
        # The statement that turns JIT off is planned before it takes effect (at these thresholds only: a one-row
        # SELECT costs far below the stock jit_above_cost).
        with reported_plans(leader, lambda text: "set_config('jit'" not in text) as plans:
            await JobStatsRollup().rollup(leader)
            await HistoryCounter().refresh(leader)
            rollups = len(plans)
            await leader.execute("SELECT count(*) FROM pgsched.jobs WHERE finished_at IS NOT NULL")
    assert rollups >= 4  # the watermark, the minute and total rollups, the counters, the queue counts...
    assert [p for p in plans[:rollups] if jit_compiled(p)] == []
    assert jit_compiled(plans[-1])  # the same session compiles a statement of its own: JIT was there to be had
