"""A first run without guesswork: every CLI failure is one line on stderr with exit 1 or 2, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.factories import insert_jobs


def _pgsched(*argv: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSCHED_")}
    if dsn is not None:
        env["PGSCHED_DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "pgsched", *argv], env=env, capture_output=True, text=True, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_bare_pgsched_prints_usage_and_exits_2() -> None:
    result = _pgsched()
    assert result.returncode == 2
    assert result.stdout.startswith("Usage: pgsched") and "Commands:" in result.stdout
    assert "Error" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("jobs", "list"),
        ("jobs", "show", "1"),
        ("enqueue", "hello"),
        ("schedules", "list"),
        ("queues",),
        ("worker", "--app", "pgsched.examples.demo:app"),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_an_unmigrated_database_says_run_migrate(empty_dsn: str, argv: tuple[str, ...]) -> None:
    line = _one_error_line(_pgsched(*argv, dsn=empty_dsn), 1)
    assert "pgsched migrate" in line


def test_doctor_on_an_unmigrated_database_reports_pending_migrations(empty_dsn: str) -> None:
    result = _pgsched("doctor", "--json", dsn=empty_dsn)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["database"]["status"] == "ok"
    assert checks["migrations"]["status"] == "fail" and "pgsched migrate" in checks["migrations"]["detail"]


def test_a_malformed_dsn_is_one_line_and_exit_2() -> None:
    line = _one_error_line(_pgsched("--dsn", "bogus:///", "jobs", "list"), 2)
    assert "invalid DSN" in line


def test_a_missing_database_fails_at_once_without_retrying(dsn: str) -> None:
    params = conninfo_to_dict(dsn)
    params["dbname"] = "pgsched_no_such_database"
    result = _pgsched("jobs", "list", dsn=make_conninfo(**params))  # type: ignore[arg-type]
    line = _one_error_line(result, 1)
    assert "does not exist" in line
    assert "WARNING" not in result.stderr  # no pool retry loop


def test_an_api_port_in_use_is_one_line_and_exit_2(dsn: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_error_line(_pgsched("api", "--port", str(port), dsn=dsn), 2)
    assert f"127.0.0.1:{port} is already in use" in line


def test_jobs_show_prints_structured_fields_as_json(dsn: str, conn: psycopg.Connection[Any]) -> None:
    (job_id,) = insert_jobs(conn, 1, task="report", args={"to": "a@b.c", "n": [1, 2]})
    result = _pgsched("jobs", "show", str(job_id), dsn=dsn)
    assert result.returncode == 0, result.stderr
    args_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("args:"))
    assert json.loads(args_line.split(":", 1)[1]) == {"to": "a@b.c", "n": [1, 2]}
