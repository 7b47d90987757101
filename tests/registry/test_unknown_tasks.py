"""A task name no worker serves: REST and the CLI refuse it (with close names) unless told otherwise;
a job inserted by SQL waits, spending no attempt, until a worker that knows the task runs it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Settings
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.worker import Worker
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.factories import register_tasks
from tests.support.waiting import await_until, wait_until


def test_rest_refuses_an_unserved_task_naming_the_field_with_close_names(settings: Settings) -> None:
    register_tasks(settings.require_dsn(), "send_welcome", "send_invoice")
    with serve_api(settings.with_(api_token=ADMIN_TOKEN), tasks=()) as api, api.client() as http:
        response = http.post("/jobs", json={"task": "send_welcom"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "task" and "'send_welcome'" in error["message"]
        assert "allow_unknown_task" in error["message"]
        batch = http.post("/jobs/batch", json={"jobs": [{"task": "send_invoice"}, {"task": "nope_task"}]})
        assert batch.status_code == 422 and batch.json()["error"]["field"] == "jobs[1].task"
        forced = http.post("/jobs", json={"task": "send_welcom", "allow_unknown_task": True})
        assert forced.status_code == 201 and forced.json()["task"] == "send_welcom"
        bad = http.post("/jobs", json={"task": "send_welcom", "allow_unknown_task": "yes"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "allow_unknown_task"
        served = http.post("/jobs/batch", json={"jobs": [{"task": "send_invoice"}, {"task": "send_welcome"}]})
        assert served.status_code == 201


def test_the_cli_refuses_an_unserved_task_in_one_line_with_exit_2(dsn: str, capsys: Any) -> None:
    register_tasks(dsn, "send_welcome")
    assert run_cli(cli, ["--dsn", dsn, "enqueue", "send_welcom"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'send_welcome'" in err and "--allow-unknown" in err
    assert run_cli(cli, ["--dsn", dsn, "enqueue", "send_welcom", "--allow-unknown"]) == 0
    assert capsys.readouterr().out.strip().isdigit()


def _row(dsn: str, job_id: int) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute("SELECT state::text, attempt, run_at, errors FROM pgsched.jobs WHERE id = %s", [job_id])
        found = row.fetchone()
    assert found is not None
    return dict(found)


async def test_a_worker_without_the_task_hands_its_job_back_uncharged_and_later(
    settings: Settings, start_worker: Callable[..., Any]
) -> None:
    dsn = settings.require_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = conn.execute("INSERT INTO pgsched.jobs (task, queue) VALUES ('later_task', 'late') RETURNING id")
        job_id = job_id.fetchone()[0]  # type: ignore[index]
        first_run_at = _row(dsn, job_id)["run_at"]
        unserved = conn.execute("SELECT reason FROM pgsched.unserved_jobs WHERE id = %s", [job_id]).fetchone()
        assert unserved == ("no worker serves this task",)
    worker: Worker = await start_worker(queues=("late",), concurrency=2, unserved_delay=60.0)  # lacks later_task
    await await_until(
        lambda: asyncio.to_thread(lambda: _row(dsn, job_id)["run_at"] > first_run_at),
        timeout=15,
        message="the job was not handed back later in line",
    )
    row = _row(dsn, job_id)
    assert (row["state"], row["attempt"], row["errors"]) == ("queued", 0, [])
    assert worker.worker_id is not None


def test_an_sql_job_of_an_unknown_task_waits_then_runs_when_a_worker_knows_it(
    dsn: str, spawn_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = conn.execute("INSERT INTO pgsched.jobs (task, queue) VALUES ('later_task', 'late') RETURNING id")
        job_id = job_id.fetchone()[0]  # type: ignore[index]
    # A real worker of another deployment serves queue "late" without the task, for a while.
    other = spawn_worker("--queues", "late", "--unserved-delay", "3")
    wait_until(lambda: _row(dsn, job_id)["run_at"] > _created(dsn, job_id), timeout=15, message="not handed back")
    assert _row(dsn, job_id)["attempt"] == 0
    other.terminate()
    other.wait(30)
    # A worker that knows the task starts: the job runs, with its first attempt.
    spawn_worker("--app", "tests.registry.registry_app:app", "--queues", "late")
    wait_until(lambda: _row(dsn, job_id)["state"] == "succeeded", timeout=60, message="job did not run")
    row = _row(dsn, job_id)
    assert (row["attempt"], row["errors"]) == (1, [])


def _created(dsn: str, job_id: int) -> Any:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT created_at FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()[0]  # type: ignore[index]
