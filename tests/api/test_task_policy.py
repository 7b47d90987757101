"""pgsched.shell needs the admin scope to be created, scheduled or retried; pgsched.http stays at write."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import LiveApi
from tests.support.factories import insert_jobs

SHELL = {"task": "pgsched.shell", "args": {"argv": ["id"]}}
SCHEDULE = {"name": "every-second", "cron": "* * * * * *", **SHELL}


@pytest.fixture
def writer(client: httpx.Client, live_api: LiveApi) -> httpx.Client:
    r = client.post("/tokens", json={"name": "writer", "scope": "write"})
    assert r.status_code == 201, r.text
    return live_api.client(r.json()["token"])


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": "creating, scheduling or retrying pgsched.shell jobs needs the admin scope",
        "field": "task",
    }


def test_a_write_token_cannot_create_or_schedule_shell_jobs(
    writer: httpx.Client, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    with writer:
        _refused(writer.post("/jobs", json=SHELL))
        _refused(writer.post("/jobs/batch", json={"jobs": [{"task": "noop"}, SHELL]}))
        _refused(writer.post("/schedules", json=SCHEDULE))
        assert client.post("/schedules", json=SCHEDULE).status_code == 201  # admin
        _refused(writer.patch("/schedules/every-second", json={"cron": "*/2 * * * * *"}))
        _refused(writer.post("/schedules/every-second/trigger"))
        assert writer.post("/jobs", json={"task": "pgsched.http", "args": {"url": "http://x"}}).status_code == 201
    count = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE task = 'pgsched.shell'").fetchone()
    assert count is not None and count["n"] == 0


def test_a_write_token_cannot_retry_or_rewrite_shell_jobs(
    writer: httpx.Client, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    [dead] = insert_jobs(conn, 1, task="pgsched.shell", args=SHELL["args"], state="dead", attempt=1)
    [queued] = insert_jobs(conn, 1, task="pgsched.shell", args=SHELL["args"], run_at="2100-01-01T00:00:00Z")
    insert_jobs(conn, 1, task="noop", queue="other", state="dead", attempt=1)
    with writer:
        _refused(writer.post(f"/jobs/{dead}/retry"))
        _refused(writer.post("/dead/retry", json={}))
        _refused(writer.post("/dead/retry", json={"task": "pgsched.shell"}))
        _refused(writer.patch(f"/jobs/{queued}", json={"args": {"argv": ["rm", "-rf", "/"]}}))
        assert writer.post("/dead/retry", json={"queue": "other"}).json()["retried"] == 1  # no shell job there
    assert client.post(f"/jobs/{dead}/retry").status_code == 200
    state = conn.execute("SELECT state::text FROM pgsched.jobs WHERE id = %s", [dead]).fetchone()
    assert state is not None and state["state"] == "queued"
