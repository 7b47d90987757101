"""Real `pgsched worker` processes: exactly-once claims across processes, SIGTERM, SIGKILL, metrics."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tests.support.factories import insert_jobs
from tests.support.processes import free_port
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]
Spawn = Callable[..., subprocess.Popen[bytes]]


def count(conn: Conn, where: str = "TRUE") -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM pgsched.jobs WHERE {where}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row["n"])


def live_workers(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.cluster WHERE alive").fetchone()
    assert row is not None
    return int(row["n"])


def test_four_worker_processes_run_every_job_exactly_once(spawn_worker: Spawn, conn: Conn, tmp_path: Path) -> None:
    port = free_port()
    procs = [spawn_worker("--concurrency", "4", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")]
    procs += [spawn_worker("--concurrency", "4") for _ in range(3)]
    wait_until(lambda: live_workers(conn) == 4, timeout=30, message="4 workers did not register")
    ids = insert_jobs(conn, 2000, task="record", args={"directory": str(tmp_path)})
    wait_until(lambda: count(conn, "state = 'succeeded'") == len(ids), timeout=90)
    runs = Counter(int(line) for f in tmp_path.glob("*.log") for line in f.read_text().split())
    assert set(runs) == set(ids)
    assert max(runs.values()) == 1, [job_id for job_id, n in runs.items() if n > 1][:10]
    assert len(list(tmp_path.glob("*.log"))) > 1, "only one process ever ran jobs"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'pgsched_jobs_succeeded_total{queue="default",task="record"}' in metrics
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(30) for proc in procs] == [0, 0, 0, 0]


def test_sigterm_hands_unfinished_jobs_back_uncharged_exits_0_and_unregisters(spawn_worker: Spawn, conn: Conn) -> None:
    proc = spawn_worker("--concurrency", "2", "--grace", "0.3")
    wait_until(lambda: live_workers(conn) == 1, timeout=30)
    ids = insert_jobs(conn, 5, task="sleepy", args={"seconds": 60})
    wait_until(lambda: count(conn, "state = 'running'") >= 2, timeout=20)  # claimed: running plus prefetched
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    rows = conn.execute("SELECT state::text, attempt, worker_id FROM pgsched.jobs WHERE id = ANY(%s)", [ids]).fetchall()
    assert rows == [{"state": "queued", "attempt": 0, "worker_id": None}] * 5
    assert conn.execute("SELECT count(*) AS n FROM pgsched.workers").fetchone() == {"n": 0}


def test_a_job_that_ends_within_the_grace_period_is_recorded_before_exit(spawn_worker: Spawn, conn: Conn) -> None:
    proc = spawn_worker("--concurrency", "1", "--grace", "30")
    wait_until(lambda: live_workers(conn) == 1, timeout=30)
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 1.0})
    wait_until(lambda: count(conn, "state = 'running'") == 1, timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert count(conn, f"id = {job_id} AND state = 'succeeded'") == 1


def test_a_second_signal_ends_the_grace_period_at_once(spawn_worker: Spawn, conn: Conn) -> None:
    proc = spawn_worker("--concurrency", "1", "--grace", "600")
    wait_until(lambda: live_workers(conn) == 1, timeout=30)
    insert_jobs(conn, 1, task="sleepy", args={"seconds": 600})
    wait_until(lambda: count(conn, "state = 'running'") == 1, timeout=20)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: proc.poll() is not None or count(conn, "state = 'running'") == 1, timeout=5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert count(conn, "state = 'queued' AND attempt = 0") == 1


def test_a_killed_worker_frees_its_lock_and_leaves_its_job_marked_for_the_reaper(
    spawn_worker: Spawn, conn: Conn
) -> None:
    proc = spawn_worker("--concurrency", "1")
    wait_until(lambda: live_workers(conn) == 1, timeout=30)
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 600})
    wait_until(lambda: count(conn, "state = 'running'") == 1, timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: live_workers(conn) == 0, timeout=20, message="the liveness lock was not released")
    row = conn.execute(
        "SELECT j.state::text, j.attempt, c.alive FROM pgsched.jobs j JOIN pgsched.cluster c ON c.id = j.worker_id "
        "WHERE j.id = %s",
        [job_id],
    ).fetchone()
    assert row == {"state": "running", "attempt": 1, "alive": False}


def test_the_worker_command_rejects_a_bad_app_reference_with_exit_2(dsn: str) -> None:
    import os
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pgsched", "worker", "--app", "tests.worker.no_such_module:app"],
        env={**os.environ, "PGSCHED_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: app: cannot import")
