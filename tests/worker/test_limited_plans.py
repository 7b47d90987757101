"""The limited claim stays cheap whatever the statistics said when its statements were planned.

The claim takes the jobs of limited queues (a concurrency limit, a rate limit) and jobs with concurrency keys through
pgsched.claim_limited, whose statements PL/pgSQL plans at their first call in a session and, with the worker's
generic plans, keeps. Here each limited queue's claim runs once under a statistics state (its plans made then and
kept), then again on a realistic table: a backlog in every queue, a running set of thousands. The rows it visits,
inside the function too, must stay within the batch and the bookkeeping of its limits (the running jobs its limit
counts, one probe per concurrency key it visits), never the backlog or the whole running set.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.plan_table import BATCH, LIMITS, STATES, load, plan_sessions
from tests.support.plans import explain_executed, jit_compiled, prepare, relations_read, rows_visited

KEY_CAP = 2 * BATCH + 16  # keys one claim visits at most (claim_limited's key_cap)
# What each queue's claim may visit: the batch it claims and writes, and its limit's bookkeeping.
BOUNDS = {
    "capped": 4 * BATCH + int(LIMITS["capped"]["concurrency"]),  # the queue's running jobs, counted up to its limit
    "rated": 4 * BATCH,
    "keyed": 4 * BATCH + 4 * KEY_CAP,  # per key visited: its next key, its head, its running jobs, its claim
}


def _claim(queue: str) -> dict[str, Any]:
    return {"queues": [queue], "limit": BATCH, "worker_id": 1, "now": None, "running": [], "free": 0}


@pytest.mark.parametrize("stats", list(STATES))
def test_the_limited_claim_visits_its_batch_and_its_limits_bookkeeping_whatever_the_statistics_said(
    dsn: str, stats: str
) -> None:
    """Each plan mode in a session of its own (plan_sessions), on one table; the backlog is loaded by another
    session than the claims', as producers load it."""
    with plan_sessions(dsn, stats, worker=True) as sessions:
        names = {plans: prepare(conn, "job_claim_batch") for plans, conn in sessions.items()}
        for plans, conn in sessions.items():  # the claim's plans, and those of claim_limited's statements, made now
            for queue in BOUNDS:
                explain_executed(conn, "job_claim_batch", names[plans], _claim(queue))
        load(sessions["generic"])  # no ANALYZE: as under a backlog that grew faster than autovacuum
        explained = {
            plans: {queue: explain_executed(conn, "job_claim_batch", names[plans], _claim(queue)) for queue in BOUNDS}
            for plans, conn in sessions.items()
        }
    for plans, plan_of in explained.items():
        _claims_within_bounds(f"{stats}, {plans} plans", plan_of)


def _claims_within_bounds(label: str, explained: dict[str, dict[str, Any]]) -> None:
    claimed = {queue: int(plan["Actual Rows"]) for queue, plan in explained.items()}
    assert claimed == dict.fromkeys(BOUNDS, BATCH), f"{label}: claimed {claimed}"
    visited = {queue: rows_visited(plan) for queue, plan in explained.items()}
    over = {queue: n for queue, n in visited.items() if n > BOUNDS[queue]}
    assert not over, f"{label}: rows visited {visited} (bounds {BOUNDS})"
    compiled = {queue: n for queue, plan in explained.items() if (n := jit_compiled(plan))}
    assert not compiled, f"{label}: JIT-compiled statements {compiled}"
    history = {
        queue: sorted(r for r in relations_read(plan) if r.startswith("jobs_done")) for queue, plan in explained.items()
    }
    assert not any(history.values()), f"{label}: the limited claim read finished jobs {history}"
