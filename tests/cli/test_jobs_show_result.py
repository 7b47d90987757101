"""``pgsched jobs show`` prints the result a task returned, in the table and in --json."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from pgsched.cli import cli
from pgsched.cli.base import run_cli
from tests.support.factories import insert_jobs


def test_jobs_show_prints_the_result_of_a_succeeded_job(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    [job_id] = insert_jobs(conn, 1, task="report", state="succeeded", result={"total": 42})
    assert run_cli(cli, ["--dsn", dsn, "jobs", "show", str(job_id), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"total": 42}
    assert run_cli(cli, ["--dsn", dsn, "jobs", "show", str(job_id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split(":", 1)[0].strip() == "result" and "42" in line for line in lines), lines
