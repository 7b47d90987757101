"""Scenario 1: workers SIGKILLed at random under a backlog. Nothing is lost; duplicates only where a worker died.

Half the jobs are ``plain`` (at-least-once: a run on a killed worker stays in the ledger), half
``tx`` (their ledger row commits with the job: never a duplicate). Workers are also leader
candidates, so a kill sometimes takes the reaper down with it and failover is part of recovery.
"""

from __future__ import annotations

import random
import signal
import statistics
import time
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, env_float, env_int, knob, live_workers
from tests.acceptance.ledger import Kills, emit, executions, recoveries
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

JOBS = env_int("PGSCHED_CHAOS_JOBS", 5000)
CHAOS_SECONDS = env_float("PGSCHED_CHAOS_SECONDS", 10)
KILL_EVERY = 2.0
WORKERS, CONCURRENCY = 4, 8
# Lease + reaper interval, plus the leader's failover when the victim led, plus a margin for
# a shared 2-core machine (SIGKILL frees the liveness lock at once: the usual case is ~1.5 s).
RECOVERY_BOUND = (
    knob("PGSCHED_LEASE_SECONDS")
    + knob("PGSCHED_REAPER_INTERVAL_SECONDS")
    + knob("PGSCHED_ELECTION_INTERVAL_SECONDS")
    + 5
)

_INSERT = """
INSERT INTO pgsched.jobs (task, args)
SELECT CASE WHEN i %% 2 = 0 THEN 'plain' ELSE 'tx' END, jsonb_build_object('seconds', %(seconds)s::float8)
  FROM generate_series(1, %(n)s::int) AS i
RETURNING id
"""


def pending(conn: psycopg.Connection[Any], ids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s) AND state <> 'succeeded'", [ids]
    ).fetchone()
    assert row is not None
    return int(row["n"])


def pace(until: float) -> None:
    """The chaos cadence itself (a kill every 2 s) is the specification, not a wait for a condition."""
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


def test_killing_random_workers_loses_nothing_and_duplicates_only_jobs_of_killed_workers(
    cluster: Cluster, db: psycopg.Connection[Any]
) -> None:
    workers = [cluster.worker("--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
    wait_until(lambda: live_workers(db) >= WORKERS, timeout=60, message="workers did not register")
    # Size each job so the backlog lasts about as long as the chaos does.
    seconds = min(0.2, CHAOS_SECONDS * WORKERS * CONCURRENCY / JOBS)
    ids = [r["id"] for r in db.execute(_INSERT, {"seconds": seconds, "n": JOBS}).fetchall()]
    rng = random.Random(9)
    kills = Kills()
    started = time.monotonic()
    tick = started
    while (tick := tick + KILL_EVERY) <= started + CHAOS_SECONDS:
        pace(tick)
        victim = rng.choice(workers)
        kills.kill(db, victim.pid, signal.SIGKILL)
        victim.wait(10)
        workers[workers.index(victim)] = cluster.worker("--concurrency", str(CONCURRENCY))
    drained = _drain(db, ids, timeout=120 + JOBS / 50)
    drain_seconds = time.monotonic() - started

    counts = executions(db, ids, kills.pids)
    recovered, reaped_unkilled = recoveries(db, ids, kills)
    emit(
        "worker_kills",
        jobs=JOBS,
        workers=WORKERS,
        concurrency=CONCURRENCY,
        job_seconds=round(seconds, 4),
        kills=len(kills.items),
        drained=drained,
        drain_seconds=round(drain_seconds, 1),
        **counts,
        requeued_from_killed=len(recovered),
        reaped_unkilled=reaped_unkilled,
        recovery_max_s=round(max(recovered, default=0.0), 2),
        recovery_p50_s=round(statistics.median(recovered), 2) if recovered else None,
        recovery_bound_s=RECOVERY_BOUND,
    )
    assert len(kills.items) >= int(CHAOS_SECONDS / KILL_EVERY) - 1
    assert counts["lost"] == 0 and drained
    assert counts["unexpected"] == 0
    assert counts["unexplained"] == 0, "a duplicate came from a worker that was not killed"
    assert counts["tx_extra_rows"] == 0, "a transactional task's side effect committed twice"
    assert reaped_unkilled == 0, "the reaper took jobs from a live worker"
    assert max(recovered, default=0.0) <= RECOVERY_BOUND


def _drain(conn: psycopg.Connection[Any], ids: list[int], timeout: float) -> bool:
    try:
        wait_until(lambda: pending(conn, ids) == 0, timeout=timeout, interval=0.2)
    except AssertionError:
        return False
    return True
