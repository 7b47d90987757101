"""Workers publish the tasks they serve; the defaults a task declares fill every enqueue path."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Pgsched, Settings, db
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.examples.demo import app as demo_app
from pgsched.schedule_store import ScheduleStore
from pgsched.worker import Worker, WorkerConfig
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.registry.registry_app import app as registry_app
from tests.support.factories import register_tasks
from tests.support.waiting import await_until

DECLARED = {"queue": "emails", "max_attempts": 1, "priority": 7}


def _job(dsn: str, job_id: int) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute("SELECT queue, max_attempts, priority FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return dict(row)


def _registry(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM pgsched.registered_tasks ORDER BY name").fetchall()


async def _publishing_worker(settings: Settings, app: Pgsched = registry_app) -> tuple[Worker, asyncio.Task[None]]:
    """A real in-process worker of ``app`` on a queue nothing is enqueued to (it only publishes)."""
    worker = Worker(app.tasks, settings, WorkerConfig(queues=("idle",), concurrency=1))
    task = asyncio.create_task(worker.run())
    await await_until(lambda: _ready(worker, task), timeout=15, message="worker did not start")
    return worker, task


async def _ready(worker: Worker, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return worker.worker_id is not None


async def test_a_worker_publishes_its_tasks_and_they_leave_with_it(settings: Settings) -> None:
    worker, task = await _publishing_worker(settings)
    rows = {r["name"]: r for r in _registry(settings.require_dsn())}
    welcome = rows["send_welcome"]
    assert {k: welcome[k] for k in DECLARED} == DECLARED
    assert welcome["timeout"] == timedelta(seconds=30)
    assert welcome["description"] == "Send the welcome mail."
    assert welcome["workers"] == [worker.worker_id] and welcome["disagree"] is False
    assert "exponential" in welcome["retry"]
    assert "pgsched.http" in rows  # the built-in tasks it serves too
    worker.stop()
    await asyncio.wait_for(task, 30)
    assert _registry(settings.require_dsn()) == []


async def test_the_declared_defaults_fill_all_six_enqueue_paths(settings: Settings, capsys: Any) -> None:
    dsn = settings.require_dsn()
    worker, task = await _publishing_worker(settings)
    plain = Pgsched(settings=settings)  # an app that does not declare the task: the database fills it in
    try:
        ids: dict[str, int] = {}
        with psycopg.connect(dsn, autocommit=True) as conn:
            ids["sql insert"] = conn.execute(
                "INSERT INTO pgsched.jobs (task) VALUES ('send_welcome') RETURNING id"
            ).fetchone()[0]  # type: ignore[index]
            ids["sql enqueue"] = conn.execute("SELECT pgsched.enqueue('send_welcome')").fetchone()[0]  # type: ignore[index]
        with serve_api(settings.with_(api_token=ADMIN_TOKEN), tasks=()) as api, api.client() as http:
            response = http.post("/jobs", json={"task": "send_welcome"})
            assert response.status_code == 201, response.text
            ids["rest"] = response.json()["id"]
            batch = http.post("/jobs/batch", json={"jobs": [{"task": "send_welcome"}]})
            ids["rest batch"] = batch.json()["ids"][0]
        assert run_cli(cli, ["--dsn", dsn, "enqueue", "send_welcome"]) == 0
        ids["cli"] = int(capsys.readouterr().out.strip())
        ids["app.enqueue"] = plain.enqueue("send_welcome", {})
        ids["enqueue_many (COPY)"] = plain.enqueue_many([{"task": "send_welcome"}])[0]
        ids["enqueue_many (run keys)"] = plain.enqueue_many([{"task": "send_welcome", "run_key": "k1"}])[0]
        await plain.schedule_async("welcome-nightly", "0 3 * * *", "send_welcome")
        pool = db.async_pool(dsn, "client", min_size=1, max_size=1)
        await pool.open()
        try:
            ids["schedule"] = (await ScheduleStore(pool).schedule_trigger("welcome-nightly")).id
        finally:
            await pool.close()
        assert {path: _job(dsn, job_id) for path, job_id in ids.items()} == dict.fromkeys(ids, DECLARED)
    finally:
        await plain.aclose()
        worker.stop()
        await asyncio.wait_for(task, 30)


def test_what_the_caller_sets_wins_over_the_declaration(dsn: str, conn: psycopg.Connection[Any]) -> None:
    register_tasks(dsn, "send_welcome", queue="emails", priority=7, max_attempts=1)
    job_id = conn.execute(
        "SELECT pgsched.enqueue('send_welcome', queue => 'bulk', max_attempts => 3) AS id"
    ).fetchone()["id"]
    assert _job(dsn, job_id) == {"queue": "bulk", "max_attempts": 3, "priority": 7}


def test_an_unknown_task_gets_the_built_in_defaults(dsn: str, conn: psycopg.Connection[Any]) -> None:
    job_id = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('nobody_knows') RETURNING id").fetchone()["id"]
    assert _job(dsn, job_id) == {"queue": "default", "max_attempts": 5, "priority": 0}


def test_a_default_changed_while_jobs_wait_applies_to_new_jobs_only(dsn: str, conn: psycopg.Connection[Any]) -> None:
    register_tasks(dsn, "report", max_attempts=2)
    before = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('report') RETURNING id").fetchone()["id"]
    register_tasks(dsn, "report", max_attempts=4)  # a newer deploy: its publication is the newest
    after = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('report') RETURNING id").fetchone()["id"]
    assert (_job(dsn, before)["max_attempts"], _job(dsn, after)["max_attempts"]) == (2, 4)
    [row] = conn.execute("SELECT max_attempts, disagree, cardinality(workers) AS n FROM pgsched.registered_tasks")
    assert row == {"max_attempts": 4, "disagree": True, "n": 2}


async def test_the_demo_flaky_task_gets_its_four_declared_attempts_from_the_cli(
    settings: Settings, capsys: Any
) -> None:
    worker, task = await _publishing_worker(settings, demo_app)
    try:
        assert run_cli(cli, ["--dsn", settings.require_dsn(), "enqueue", "flaky"]) == 0
        job_id = int(capsys.readouterr().out.strip())
        assert _job(settings.require_dsn(), job_id)["max_attempts"] == 4
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


def test_a_single_enqueue_resolves_the_newest_defaults_itself_without_the_defaults_trigger(dsn: str) -> None:
    register_tasks(dsn, "report", queue="reports", priority=3, max_attempts=2)
    register_tasks(dsn, "report", queue="reports", priority=4, max_attempts=6)  # the newest publication wins
    app = Pgsched(settings=Settings(dsn=dsn))
    try:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            conn.execute("SET LOCAL track_functions = 'pl'")
            ids = [app.enqueue("report", {}, conn=conn), app.enqueue("report", {}, conn=conn, queue="bulk")]
            ids.append(app.enqueue("nobody_knows", {}, conn=conn))
            [calls] = conn.execute(
                "SELECT count(*) AS n FROM pg_stat_xact_user_functions WHERE funcname = 'jobs_fill_defaults'"
            ).fetchall()
            conn.commit()
        assert calls["n"] == 0
        assert [_job(dsn, job_id) for job_id in ids] == [
            {"queue": "reports", "max_attempts": 6, "priority": 4},
            {"queue": "bulk", "max_attempts": 6, "priority": 4},
            {"queue": "default", "max_attempts": 5, "priority": 0},
        ]
    finally:
        app.close()


def _round_trips(trace: str) -> list[str]:
    """The client's requests in a libpq protocol trace: each simple Query, and each Sync of an extended one."""
    return [
        line.split("\t")[2].split()[0]
        for line in trace.splitlines()
        if line.startswith("F\t") and line.split("\t")[2].split()[0] in ("Query", "Sync")
    ]


def test_enqueue_many_sends_one_statement_before_its_copy_even_when_defaults_are_left_out(
    dsn: str, tmp_path: Any
) -> None:
    register_tasks(dsn, "report", queue="reports", priority=4, max_attempts=6)
    app = Pgsched(settings=Settings(dsn=dsn))
    trace = tmp_path / "trace.txt"
    try:
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn, trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            ids = app.enqueue_many(
                [{"task": "report"}, {"task": "report", "priority": 1}, {"task": "other"}], conn=conn
            )
            conn.pgconn.untrace()
        assert _round_trips(trace.read_text()) == ["Sync", "Query"]  # ids with defaults, then the COPY
        assert [_job(dsn, job_id) for job_id in ids] == [
            {"queue": "reports", "max_attempts": 6, "priority": 4},
            {"queue": "reports", "max_attempts": 6, "priority": 1},
            {"queue": "default", "max_attempts": 5, "priority": 0},
        ]
    finally:
        app.close()
