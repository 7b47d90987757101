"""A task steers its own fate (Snooze, Retry(after), Discard, Cancel, retry_on / dont_retry_on), in a real worker."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgsched import Settings
from tests.support.processes import free_port
from tests.support.waiting import wait_until
from tests.worker.conftest import enqueue

APP = "tests.worker.control_app:app"
Conn = psycopg.Connection[Any]


@pytest.fixture
def worker(spawn_worker: Any) -> Any:
    return spawn_worker("--app", APP, "--concurrency", "4")


def ended(conn: Conn, job_id: int, *states: str, timeout: float = 20) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        found = conn.execute(
            "SELECT state::text AS state, attempt, snoozes, errors, started_at, result FROM pgsched.jobs WHERE id = %s",
            [job_id],
        ).fetchone()
        return found if found is not None and found["state"] in states else None

    return wait_until(row, timeout=timeout, message=f"job {job_id} not {states}")


def kinds(row: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in row["errors"]]


def test_a_snoozed_job_runs_again_later_and_keeps_its_attempt_count(
    worker: Any, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    job_id = enqueue(settings, "snooze_once", max_attempts=5, directory=str(tmp_path), seconds=0.5)
    row = ended(conn, job_id, "succeeded")
    assert row["result"] == "attempt 1"  # the second run is attempt 1 again
    assert (row["attempt"], row["snoozes"]) == (1, 1)
    (entry,) = row["errors"]
    assert entry["kind"] == "snooze" and "snoozed for 0.5s: the partner API is warming up" in entry["error"]
    assert row["started_at"] >= datetime.fromisoformat(entry["at"])  # not before the snooze was written


def test_a_job_snoozed_past_its_tasks_limit_is_dead_with_a_clear_error(
    worker: Any, settings: Settings, conn: Conn
) -> None:
    job_id = enqueue(settings, "snooze_forever", max_attempts=5)
    row = ended(conn, job_id, "dead")
    assert kinds(row) == ["snooze", "snooze", "snooze_limit"]
    assert row["snoozes"] == 2 and row["attempt"] == 1
    assert "snoozed 2 times, the limit of its task (max_snoozes)" in row["errors"][-1]["error"]


def test_a_discarded_job_makes_one_attempt_only_is_dead_and_says_so_in_jobs_show_and_the_metrics(
    spawn_worker: Any, settings: Settings, conn: Conn
) -> None:
    port = free_port()
    spawn_worker("--app", APP, "--metrics-port", str(port))
    job_id = enqueue(settings, "discard_it", max_attempts=5)
    row = ended(conn, job_id, "dead")
    assert row["attempt"] == 1 and kinds(row) == ["discard"]
    assert row["errors"][0]["error"] == "discarded: the account was deleted"
    dead = conn.execute("SELECT id FROM pgsched.dead_letter WHERE id = %s", [job_id]).fetchone()
    assert dead is not None
    shown = subprocess.run(
        [sys.executable, "-m", "pgsched", "--dsn", settings.require_dsn(), "jobs", "show", str(job_id)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "[discard]: discarded: the account was deleted" in shown
    metrics = wait_until(lambda: _scrape(port, 'kind="discard"'), timeout=10, message="no discard in the metrics")
    assert 'pgsched_job_error_entries_total{kind="discard",queue="default",task="discard_it"} 1.0' in metrics


def _scrape(port: int, needle: str) -> str | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return text if needle in text else None


def test_a_job_the_task_cancels_makes_one_attempt_and_is_cancelled(worker: Any, settings: Settings, conn: Conn) -> None:
    job_id = enqueue(settings, "cancel_it", max_attempts=5)
    row = ended(conn, job_id, "cancelled")
    assert row["attempt"] == 1 and kinds(row) == ["cancel"]
    assert row["errors"][0]["error"] == "cancelled by the task: nobody needs this any more"


def test_retry_after_waits_the_tasks_own_delay_and_counts_an_attempt(
    worker: Any, settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    # The task's backoff would retry after 0.05 s; Retry(after=2) must hold it for 2 s.
    job_id = enqueue(settings, "retry_after", max_attempts=5, directory=str(tmp_path), after=2)
    row = ended(conn, job_id, "succeeded")
    assert row["attempt"] == 2 and kinds(row) == ["retry"]
    assert "retry after 2s: 429 Too Many Requests" in row["errors"][0]["error"]
    waited = (row["started_at"] - datetime.fromisoformat(row["errors"][0]["at"])).total_seconds()
    assert waited >= 1.9, waited  # run_at is set from the database clock at the write, after the entry's time


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        ("reset", 3, ["exception", "exception", "exception"]),  # in retry_on: retried until out of attempts
        ("refused", 1, ["no_retry"]),  # in dont_retry_on (which wins over retry_on): dead at once
        ("value", 1, ["no_retry"]),  # not in retry_on: dead at once
    ],
)
def test_retry_on_and_dont_retry_on_decide_which_exceptions_are_retried(
    worker: Any, settings: Settings, conn: Conn, error: str, attempts: int, expected: list[str]
) -> None:
    job_id = enqueue(settings, "picky", max_attempts=3, error=error)
    row = ended(conn, job_id, "dead")
    assert row["attempt"] == attempts and kinds(row) == expected
