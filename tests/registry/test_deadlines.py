"""A job not started by its expires_at ends as expired (cancelled, errors entry of kind "expired") and never runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Pgsched, Settings
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.maintenance import Reaper
from pgsched.metrics import JOBS_EXPIRED
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.waiting import await_until


def _job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT state::text, attempt, started_at, finished_at, errors, expires_at FROM pgsched.jobs WHERE id = %s",
        [job_id],
    ).fetchone()
    assert row is not None
    return dict(row)


async def test_a_claim_ends_a_job_past_its_deadline_instead_of_running_it(
    settings: Settings, app: Pgsched, start_worker: Callable[..., Any], tmp_path: Path, capsys: Any
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    late = app.enqueue("record", {"directory": str(tmp_path)}, expires_at=past)
    in_time = app.enqueue("record", {"directory": str(tmp_path)}, start_within=60)
    await start_worker(concurrency=2)  # no leader runs here: only the claim can stop the late job
    with psycopg.connect(settings.require_dsn(), autocommit=True, row_factory=dict_row) as conn:
        await await_until(lambda: _done(conn, in_time, late), timeout=15, message="jobs did not finish")
        ended = _job(conn, late)
        assert (ended["state"], ended["attempt"], ended["started_at"]) == ("cancelled", 0, None)
        assert ended["errors"][-1]["kind"] == "expired"
        assert _job(conn, in_time)["state"] == "succeeded"
    ran = "".join(p.read_text() for p in tmp_path.glob("*.log")).split()
    assert ran == [str(in_time)]
    job = app.get_job(late)
    assert job is not None and job.expired and job.to_dict()["expired"] is True
    assert await asyncio.to_thread(run_cli, cli, ["--dsn", settings.require_dsn(), "jobs", "show", str(late)]) == 0
    assert "never started at" in capsys.readouterr().out


async def _done(conn: psycopg.Connection[Any], *job_ids: int) -> bool:
    return all(_job(conn, job_id)["state"] in {"succeeded", "cancelled"} for job_id in job_ids)


async def test_the_leader_sweeps_queued_jobs_past_their_deadline(settings: Settings, app: Pgsched) -> None:
    dsn = settings.require_dsn()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        expired = conn.execute(
            "SELECT pgsched.enqueue('report', queue => 'nobody', expires_at => now() - interval '1 second') AS id"
        ).fetchone()["id"]
        waiting = conn.execute(
            "SELECT pgsched.enqueue('report', queue => 'nobody', expires_at => now() + interval '1 hour') AS id"
        ).fetchone()["id"]
    before = JOBS_EXPIRED.labels("nobody", "report")._value.get()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        assert await Reaper(settings).expire(aconn) == 1
        assert await Reaper(settings).expire(aconn) == 0
    assert JOBS_EXPIRED.labels("nobody", "report")._value.get() == before + 1
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        ended = _job(conn, expired)
        assert (ended["state"], ended["attempt"], ended["errors"][-1]["kind"]) == ("cancelled", 0, "expired")
        assert ended["finished_at"] is not None
        assert _job(conn, waiting)["state"] == "queued"


def test_rest_takes_a_deadline_and_shows_it(settings: Settings) -> None:
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
        made = http.post("/jobs", json={"task": "t", "delay_seconds": 60, "start_within_seconds": 30})
        assert made.status_code == 201, made.text
        body = made.json()
        run_at, expires_at = (datetime.fromisoformat(body[k]) for k in ("run_at", "expires_at"))
        assert abs((expires_at - run_at).total_seconds() - 30) < 1 and body["expired"] is False
        at = http.post("/jobs", json={"task": "t", "expires_at": "2030-01-01T00:00:00Z"})
        assert datetime.fromisoformat(at.json()["expires_at"]) == datetime(2030, 1, 1, tzinfo=UTC)
        bad = http.post("/jobs", json={"task": "t", "start_within_seconds": 0})
        assert bad.status_code in (400, 422) and bad.json()["error"]["field"] == "start_within_seconds"
        both = http.post("/jobs", json={"task": "t", "start_within_seconds": 5, "expires_at": "2030-01-01T00:00:00Z"})
        assert both.status_code == 422 and both.json()["error"]["field"] == "start_within_seconds"
