"""Scenario 3: a worker SIGSTOPped past its lease mid-job, then SIGCONT. Fencing rejects its late completion.

The job is transactional: its ledger row commits only with the job's success. The paused
worker's transaction is still open when it resumes; its fenced UPDATE finds the job no longer
its own (attempt moved on), so it rolls back and leaves no ledger row. The job's final result
is the other worker's.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, live_workers
from tests.acceptance.ledger import emit, executions
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

LEASE = 3.0
JOB_SECONDS = 3.0


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT j.state::text AS state, j.attempt, j.result, j.errors, w.pid FROM pgsched.jobs j "
        "LEFT JOIN pgsched.workers w ON w.id = j.worker_id WHERE j.id = %s",
        [job_id],
    ).fetchone()
    assert row is not None
    return dict(row)


def open_transactions(conn: psycopg.Connection[Any], pid: int) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s AND state LIKE 'idle in transaction%%'",
        [f"pgsched:worker:{pid}"],
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_a_worker_paused_past_its_lease_loses_the_job_and_its_late_completion_is_rejected(
    cluster: Cluster, db: psycopg.Connection[Any]
) -> None:
    cluster.env["PGSCHED_LEASE_SECONDS"] = str(LEASE)
    paused = cluster.worker("--no-scheduler", "--concurrency", "1")
    wait_until(lambda: live_workers(db) == 1, timeout=60, message="worker did not register")
    row = db.execute(
        "INSERT INTO pgsched.jobs (task, args) VALUES ('tx', jsonb_build_object('seconds', %s::float8)) RETURNING id",
        [JOB_SECONDS],
    ).fetchone()
    assert row is not None
    job_id = row["id"]
    wait_until(lambda: job(db, job_id)["state"] == "running", timeout=30, message="job did not start")
    wait_until(lambda: open_transactions(db, paused.pid) == 1, timeout=30, message="no transaction open")
    os.kill(paused.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    other = cluster.worker("--no-scheduler", "--concurrency", "1")
    cluster.scheduler()
    wait_until(lambda: job(db, job_id)["state"] == "succeeded", timeout=60, message="job was not re-run")
    paused_for = time.monotonic() - stopped_at
    os.kill(paused.pid, signal.SIGCONT)
    # The resumed worker finishes its sleep, tries to record success, is fenced out, rolls back.
    wait_until(lambda: open_transactions(db, paused.pid) == 0, timeout=30, message="late transaction still open")
    wait_until(lambda: live_workers(db) == 3, timeout=60, message="the resumed worker did not re-register")

    final = job(db, job_id)
    rows = db.execute("SELECT attempt, worker_pid FROM ledger WHERE job_id = %s", [job_id]).fetchall()
    counts = executions(db, [job_id], [])
    emit(
        "paused_worker",
        lease_s=LEASE,
        paused_s=round(paused_for, 2),
        attempts=final["attempt"],
        lost_errors=[e["kind"] for e in final["errors"]],
        result_from="other" if final["result"] == other.pid else final["result"],
        ledger_rows=len(rows),
        late_commit=any(r["worker_pid"] == paused.pid for r in rows),
        paused_alive=paused.poll() is None,
        **counts,
    )
    assert paused_for > LEASE
    assert final["attempt"] == 2 and [e["kind"] for e in final["errors"]] == ["worker_lost"]
    assert final["result"] == other.pid, "the job's final result must be the other worker's"
    assert rows == [{"attempt": 2, "worker_pid": other.pid}], "the paused worker's late side effect committed"
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["unexpected"] == 0
    assert paused.poll() is None, "the resumed worker should live on"
