"""Scenario 5: PostgreSQL crashed (``stop -m immediate``) and restarted within a second, again and again, under load.

Runs on a throwaway embedded server, never the machine's shared one. Worker sessions commit with
``synchronous_commit = off``, so each crash may lose the last claims and completions. Afterwards no
job is stuck ``running``, no acknowledged job is lost, and no attempt ran twice with both results
written (the ``tx`` half commits its ledger row with its result: an extra row would be a second write).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pgsched.embedded import EmbeddedPostgres
from tests.acceptance.conftest import Server, connect, env_int, live_workers, running_cluster, scalar
from tests.acceptance.ledger import emit, executions
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

CRASHES = env_int("PGSCHED_CHAOS_CRASHES", 2)
JOBS = max(2000, 400 * CRASHES)
WORKERS, CONCURRENCY = 4, 4
JOB_SECONDS = 0.1

_INSERT = """
INSERT INTO pgsched.jobs (task, args)
SELECT CASE WHEN i %% 2 = 0 THEN 'plain' ELSE 'tx' END, jsonb_build_object('seconds', %(seconds)s::float8)
  FROM generate_series(1, %(n)s::int) AS i
RETURNING id
"""


def test_short_postgres_crashes_under_load_leave_nothing_running_and_lose_nothing(
    embedded: tuple[EmbeddedPostgres, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server, dsn = Server(embedded[0], embedded[1]), embedded[1]
    with running_cluster(dsn, tmp_path / "logs", request) as cluster:
        with connect(dsn) as db:
            procs = [cluster.worker("--no-scheduler", "--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
            procs.append(cluster.scheduler())
            wait_until(lambda: live_workers(db) == WORKERS + 1, timeout=60, message="processes did not register")
            ids = [r["id"] for r in db.execute(_INSERT, {"seconds": JOB_SECONDS, "n": JOBS}).fetchall()]
        outages = [_crash_under_load(server, dsn) for _ in range(CRASHES)]
        with connect(dsn) as db:
            settled = _settle(db, ids, timeout=60 + JOBS * JOB_SECONDS / 4)
            stuck = scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE id = ANY(%s) AND state = 'running'", [ids])
            counts = executions(db, ids, [])
            emit(
                "postgres_crashes",
                crashes=CRASHES,
                jobs=JOBS,
                outage_max_s=round(max(outages), 2),
                settled=settled,
                stuck_running=stuck,
                **counts,
                processes_alive=sum(p.poll() is None for p in procs),
            )
        alive = all(p.poll() is None for p in procs)
    assert settled and stuck == 0, "jobs stayed running after the crashes"
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert counts["tx_extra_rows"] == 0, "an attempt ran twice and both results were written"
    assert alive, "a pgsched process died with the database"


def _succeeded(db: Any) -> int:
    return int(scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE state = 'succeeded'"))


def _crash_under_load(server: Server, dsn: str) -> float:
    """Wait until jobs are finishing right now, then crash and restart the server; the outage in seconds."""
    with connect(dsn) as db:
        done = _succeeded(db)
        wait_until(lambda: _succeeded(db) > done + 50, timeout=60, message="jobs did not flow")
    began = time.monotonic()
    server.crash_and_start()
    return time.monotonic() - began


def _settle(db: Any, ids: list[int], timeout: float) -> bool:
    try:
        wait_until(
            lambda: (
                scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE id = ANY(%s) AND state <> 'succeeded'", [ids])
                == 0
            ),
            timeout=timeout,
            interval=0.2,
        )
    except AssertionError:
        return False
    return True
