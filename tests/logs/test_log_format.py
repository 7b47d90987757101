"""--log-format json|text on a real `pgsched worker` process: every structured field reaches stderr."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from pgsched.context import JobContext, reset_current_job, set_current_job
from pgsched.logs import TextFormatter, configure_logging
from tests.support.factories import insert_jobs
from tests.support.processes import ROOT, spawn, stop
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]


def _worker(dsn: str, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PGSCHED_DSN": dsn, "PGSCHED_HEARTBEAT_SECONDS": "0.5", **(env or {})}
    argv = [sys.executable, "-m", "pgsched", *options, "worker", "--app", "tests.logs.log_app:app", "--no-scheduler"]
    return spawn([*argv, "--queues", "default,mail"], environment)


def _states(conn: Conn, ids: list[int]) -> list[str]:
    rows = conn.execute("SELECT state FROM pgsched.jobs WHERE id = ANY(%s) ORDER BY id", [ids]).fetchall()
    return [r["state"] for r in rows]


def test_json_lines_carry_event_job_task_queue_attempt_worker_and_error(dsn: str, conn: Conn) -> None:
    proc = _worker(dsn, "--log-format", "json", "--log-level", "DEBUG")
    try:
        ids = insert_jobs(conn, 1, task="greet", queue="mail", args={"name": "ada"}) + insert_jobs(
            conn, 1, task="broken", max_attempts=1
        )
        wait_until(lambda: _states(conn, ids) == ["succeeded", "dead"], timeout=20)
    finally:
        err = stop(proc)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is one JSON object
    by_event = {line.get("event"): line for line in lines}
    started = by_event["worker_started"]
    assert started["level"] == "INFO" and isinstance(started["worker_id"], int) and started["time"]
    greeted = by_event["greeted"]  # logged by the task itself: the job's context is attached
    assert greeted["message"] == "greeting ada" and greeted["logger"] == "shop.tasks"
    assert (greeted["job_id"], greeted["task"], greeted["queue"], greeted["attempt"]) == (ids[0], "greet", "mail", 1)
    assert greeted["worker_id"] == started["worker_id"]
    dead = by_event["job_dead"]
    assert (dead["level"], dead["job_id"], dead["task"], dead["attempt"]) == ("ERROR", ids[1], "broken", 1)
    assert dead["error"] == "ValueError: broken on purpose"
    assert by_event["job_succeeded"]["level"] == "DEBUG"  # per-job success lines only at debug


def test_text_lines_show_the_fields_and_a_lost_listener_says_why(dsn: str, conn: Conn) -> None:
    proc = _worker(dsn, env={"PGSCHED_LOG_FORMAT": "text"})
    try:
        wait_until(
            lambda: conn.execute(
                "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'pgsched:listener:%%'"
            ).fetchall(),
            timeout=15,
        )
        (job_id,) = insert_jobs(conn, 1, task="broken", max_attempts=1)
        wait_until(lambda: _states(conn, [job_id]) == ["dead"], timeout=20)
    finally:
        err = stop(proc)
    lost = next(line for line in err.splitlines() if "listener connection lost" in line)
    assert "WARNING pgsched.notifier" in lost and "event=listener_lost" in lost and "error=" in lost
    dead = next(line for line in err.splitlines() if "event=job_dead" in line)
    assert f"job_id={job_id} task=broken attempt=1" in dead
    assert 'error="ValueError: broken on purpose"' in dead


def test_an_unknown_log_format_is_a_usage_error(dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgsched", "--log-format", "xml", "workers"],
        cwd=ROOT,
        env={**os.environ, "PGSCHED_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "xml" in result.stderr


def test_text_format_keeps_the_traceback_below_the_fields_and_quotes_spaces() -> None:
    formatter = TextFormatter()
    try:
        raise KeyError("k")
    except KeyError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("once",), sys.exc_info())
    record.__dict__.update({"event": "e", "error": "two words", "items": [1, 2], "none": None})
    first, *rest = formatter.format(record).splitlines()
    assert first.endswith('ERROR x failed once event=e error="two words" items=[1,2]')
    assert rest[0].startswith("Traceback") and rest[-1] == "KeyError: 'k'"


def test_configure_logging_attaches_the_running_job_to_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers[:] = []  # pytest's own capture handlers would make configure_logging stand back
        configure_logging("INFO", "json")
        token = set_current_job(JobContext(7, 2, "q", "t", 3))
        try:
            logging.getLogger("app").info("inside", extra={"event": "x"})
        finally:
            reset_current_job(token)
        logging.getLogger("app").info("outside")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: inside[k] for k in ("job_id", "attempt", "queue", "task", "worker_id")} == {
        "job_id": 7,
        "attempt": 2,
        "queue": "q",
        "task": "t",
        "worker_id": 3,
    }
    assert "job_id" not in outside


def test_configure_logging_leaves_handlers_installed_by_someone_else_alone() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    theirs = logging.NullHandler()
    try:
        root.handlers[:] = [theirs]
        configure_logging("DEBUG", "json")
        assert root.handlers == [theirs]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
