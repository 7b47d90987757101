"""The process executor (executor="process"): real `pgsched worker` processes and their children.

A child that dies or outgrows its memory ceiling fails only its own attempt; a timeout kills the child;
children are replaced after max_tasks_per_child jobs; control signals cross the process boundary.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from pgsched import Settings
from tests.support.waiting import wait_until
from tests.worker.conftest import enqueue

APP = "tests.worker.control_app:app"
Conn = psycopg.Connection[Any]


def finished(conn: Conn, *ids: int, timeout: float = 60) -> dict[int, dict[str, Any]]:
    def rows() -> dict[int, dict[str, Any]] | None:
        found = conn.execute(
            "SELECT id, state::text AS state, attempt, result, errors FROM pgsched.jobs WHERE id = ANY(%s)"
            " AND state IN ('succeeded', 'dead', 'cancelled')",
            [list(ids)],
        ).fetchall()
        return {r["id"]: r for r in found} if len(found) == len(ids) else None

    return wait_until(rows, timeout=timeout, message=f"jobs {ids} not finished")


def pool_child(pid: int) -> bool:
    """A child of the process pool (not multiprocessing's resource tracker, which spawn starts beside them)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_process_task_runs_in_a_child_replaced_after_max_tasks_per_child(
    spawn_worker: Any, settings: Settings, conn: Conn
) -> None:
    worker = spawn_worker("--app", APP, "--concurrency", "4", "--processes", "1", "--max-tasks-per-child", "2")
    ids = [enqueue(settings, "child_pid", max_attempts=1) for _ in range(6)]
    rows = finished(conn, *ids)
    pids = Counter(row["result"] for row in rows.values())
    assert all(row["state"] == "succeeded" for row in rows.values())
    assert worker.pid not in pids and sorted(pids.values()) == [2, 2, 2]  # three children, two jobs each


def test_a_child_killed_by_its_memory_ceiling_fails_only_its_own_attempt(
    spawn_worker: Any, settings: Settings, conn: Conn
) -> None:
    worker = spawn_worker("--app", APP, "--concurrency", "4", "--processes", "2", "--child-memory-mb", "150")
    hog = enqueue(settings, "hog_memory", max_attempts=1, megabytes=400, hold=10)
    others = [enqueue(settings, "cpu_burn", max_attempts=1, n=200_000) for _ in range(3)] + [
        enqueue(settings, "child_pid", max_attempts=1)
    ]
    threaded = enqueue(settings, "report_progress", max_attempts=1, steps=2, pause=0.1)  # a thread task beside them
    rows = finished(conn, hog, *others, threaded)
    assert rows[hog]["state"] == "dead" and rows[hog]["attempt"] == 1
    (entry,) = rows[hog]["errors"]
    assert entry["kind"] == "memory" and "over the ceiling of 150 MiB: killed" in entry["error"]
    assert [rows[i]["state"] for i in (*others, threaded)] == ["succeeded"] * 5
    assert worker.poll() is None
    after = enqueue(settings, "cpu_burn", max_attempts=1, n=1000)  # the pool goes on with a new child
    assert finished(conn, after)[after]["state"] == "succeeded"


def test_a_timeout_kills_the_child_and_a_crashed_child_fails_only_its_attempt(
    spawn_worker: Any, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    worker = spawn_worker("--app", APP, "--concurrency", "4", "--processes", "2")
    started = time.monotonic()
    slow = enqueue(settings, "sleep_in_child", max_attempts=1, directory=str(tmp_path), seconds=60)
    crash = enqueue(settings, "crash_child", max_attempts=1)
    fine = enqueue(settings, "child_pid", max_attempts=1)
    rows = finished(conn, slow, crash, fine, timeout=30)
    assert time.monotonic() - started < 30
    assert rows[slow]["state"] == "dead" and rows[slow]["errors"][0]["kind"] == "timeout"  # after 5 s, not 60
    child = int((tmp_path / "pid").read_text())
    wait_until(lambda: not alive(child), timeout=10, message=f"child {child} of the timed-out job still alive")
    assert rows[crash]["state"] == "dead" and rows[crash]["errors"][0]["kind"] == "crash"
    assert "killed by signal 9" in rows[crash]["errors"][0]["error"]
    assert rows[fine]["state"] == "succeeded" and worker.poll() is None and os.getpid() != rows[fine]["result"]


def test_control_signals_raised_in_a_child_steer_the_job(
    spawn_worker: Any, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    spawn_worker("--app", APP, "--processes", "1")
    job_id = enqueue(settings, "snooze_in_child", max_attempts=1, directory=str(tmp_path))
    row = finished(conn, job_id)[job_id]
    assert (row["state"], row["result"], row["attempt"]) == ("succeeded", "attempt 1", 1)
    assert [e["kind"] for e in row["errors"]] == ["snooze"]


def test_progress_reported_in_a_child_reaches_the_job_row(spawn_worker: Any, settings: Settings, conn: Conn) -> None:
    spawn_worker("--app", APP, "--processes", "1")
    job_id = enqueue(settings, "progress_in_child", max_attempts=1, steps=3)
    finished(conn, job_id)
    row = conn.execute("SELECT progress, progress_message FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None and (row["progress"], row["progress_message"]) == (1.0, "child step 3")


def test_cancelling_a_running_process_job_kills_its_child(
    spawn_worker: Any, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    worker = spawn_worker("--app", APP, "--processes", "1")
    job_id = enqueue(settings, "wait_in_child", max_attempts=1, directory=str(tmp_path))
    pid_file = tmp_path / "pid"
    wait_until(pid_file.exists, timeout=30, message="the child did not start the job")
    child = int(pid_file.read_text())
    conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    assert finished(conn, job_id, timeout=20)[job_id]["state"] == "cancelled"
    wait_until(lambda: not alive(child), timeout=10, message=f"child {child} of the cancelled job still alive")
    assert worker.poll() is None


def test_a_worker_serving_a_process_task_starts_its_children_before_the_first_job(spawn_worker: Any) -> None:
    worker = spawn_worker("--app", APP, "--processes", "2")

    def children() -> list[int] | None:
        tasks = Path(f"/proc/{worker.pid}/task").iterdir()  # a child is listed under the thread that started it
        found = [pid for task in tasks for pid in (task / "children").read_text().split()]
        pids = [int(pid) for pid in found if alive(int(pid)) and pool_child(int(pid))]
        return pids if len(pids) >= 2 else None

    assert len(wait_until(children, timeout=30, message="the process children were not started")) == 2
