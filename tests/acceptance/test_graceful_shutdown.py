"""Scenario 5: SIGTERM while jobs run. Short ones finish within the grace period; long ones and
buffered ones are handed back to the queue without an attempt charged; the process exits 0."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, live_workers, scalar
from tests.acceptance.ledger import emit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

GRACE = 4.0
SHORT_SECONDS = 2.0
CONCURRENCY = 4
# Start-up of the shutdown, flushing, unregistering: on a loaded machine allow this much past the grace.
EXIT_MARGIN = 10.0


def insert(conn: psycopg.Connection[Any], n: int, seconds: float) -> list[int]:
    rows = conn.execute(
        "INSERT INTO pgsched.jobs (task, args) SELECT 'sleeper', jsonb_build_object('seconds', %s::float8) "
        "FROM generate_series(1, %s) RETURNING id",
        [seconds, n],
    ).fetchall()
    return [r["id"] for r in rows]


def rows(conn: psycopg.Connection[Any], ids: list[int]) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, state::text AS state, attempt, worker_id, errors, finished_at FROM pgsched.jobs "
        "WHERE id = ANY(%s) ORDER BY id",
        [ids],
    ).fetchall()


def test_sigterm_drains_short_jobs_within_the_grace_and_hands_long_ones_back_uncharged(
    cluster: Cluster, db: psycopg.Connection[Any]
) -> None:
    proc = cluster.worker("--no-scheduler", "--concurrency", str(CONCURRENCY), "--grace", str(GRACE))
    wait_until(lambda: live_workers(db) == 1, timeout=60, message="worker did not register")
    short = insert(db, 2, SHORT_SECONDS)
    long = insert(db, 2, 600)
    waiting = insert(db, 4, 600)  # claimed ahead (prefetched) or still queued
    wait_until(
        lambda: scalar(db, "SELECT count(*) AS v FROM ledger WHERE kind = 'start'") == CONCURRENCY,
        timeout=30,
        message="the first four jobs did not start",
    )
    term_at = scalar(db, "SELECT clock_timestamp() AS v")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(GRACE + EXIT_MARGIN + 20)
    exit_seconds = time.monotonic() - sent

    short_rows, long_rows, waiting_rows = rows(db, short), rows(db, long), rows(db, waiting)
    drained_in = max((r["finished_at"] - term_at).total_seconds() for r in short_rows if r["finished_at"])
    handed_back = [r for r in long_rows + waiting_rows if r["state"] == "queued"]
    charged = [r["id"] for r in long_rows + waiting_rows if r["attempt"] != 0 or r["errors"] or r["worker_id"]]
    emit(
        "graceful_shutdown",
        grace_s=GRACE,
        exit_code=code,
        exit_s=round(exit_seconds, 2),
        short_succeeded=sum(r["state"] == "succeeded" for r in short_rows),
        short_done_after_term_s=round(drained_in, 2),
        long_handed_back=sum(r["state"] == "queued" for r in long_rows),
        waiting_handed_back=sum(r["state"] == "queued" for r in waiting_rows),
        charged=len(charged),
        registered_after=scalar(db, "SELECT count(*) AS v FROM pgsched.workers"),
    )
    assert code == 0
    assert [r["state"] for r in short_rows] == ["succeeded", "succeeded"]
    assert drained_in <= GRACE
    assert len(handed_back) == len(long) + len(waiting)
    assert charged == [], "a handed-back job was charged an attempt"
    assert exit_seconds <= GRACE + EXIT_MARGIN
    assert scalar(db, "SELECT count(*) AS v FROM pgsched.workers") == 0
