"""Scenario: 500 jobs failing together for 30 s (8 attempts at most) on real workers: retries spread, not waves.

With a narrow jitter (the ±10 % pgsched had) a cohort's retries arrive at about 1, 3, 7, 15 and 31 s, with
peaks of nearly the whole cohort in one second. The default jitter spreads them: the per-second rate of
retry starts during the failing window stays within 3x of its mean.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, env_float, live_workers, scalar
from tests.acceptance.ledger import emit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

COHORT = 500
FAILING_SECONDS = env_float("PGSCHED_CHAOS_STORM_SECONDS", 30.0)

_INSERT = """
INSERT INTO pgsched.jobs (task, args)
SELECT 'failing', jsonb_build_object('until', %(until)s::float8) FROM generate_series(1, %(n)s::int)
"""

_STARTS = """
SELECT extract(epoch FROM l.at - first.at)::float8 AS t
  FROM ledger l, (SELECT min(at) AS at FROM ledger WHERE kind = 'failing') first
 WHERE l.kind = 'failing' AND l.attempt > 1
"""


def test_a_cohort_of_500_failing_together_retries_at_most_3x_its_mean_rate_per_second(
    cluster: Cluster, db: psycopg.Connection[Any]
) -> None:
    for _ in range(2):
        cluster.worker("--no-scheduler", "--concurrency", "16")
    wait_until(lambda: live_workers(db) == 2, timeout=60, message="workers did not register")
    until = time.time() + FAILING_SECONDS
    db.execute(_INSERT, {"until": until, "n": COHORT})
    firsts = "SELECT count(*) AS v FROM ledger WHERE kind = 'failing' AND attempt = 1"
    wait_until(lambda: scalar(db, firsts) == COHORT, timeout=60, message="the cohort did not start")
    wait_until(lambda: time.time() > until + 1, timeout=FAILING_SECONDS + 5, interval=0.5)
    starts = [r["t"] for r in db.execute(_STARTS).fetchall()]
    window = [t for t in starts if t < FAILING_SECONDS]
    per_second = collections.Counter(int(t) for t in window)
    seconds = FAILING_SECONDS - min(per_second)
    mean = len(window) / seconds
    peak = max(per_second.values())
    emit("retry_storm", cohort=COHORT, retries=len(window), mean_per_s=round(mean, 1), peak_per_s=peak)
    assert peak <= 3 * mean, f"retries came in waves: {peak}/s against a mean of {mean:.1f}/s"
