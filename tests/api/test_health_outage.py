"""/health says 503 with Retry-After while PostgreSQL is down and recovers by itself when it returns.

Uses a throwaway embedded server in a temp dir (never the shared one), stopped and started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from pgsched.config import Settings
from pgsched.embedded import EmbeddedPostgres
from pgsched.migrate import Migrator
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    yield server
    server.stop()


def _status(client: httpx.Client, path: str) -> int:
    try:
        return client.get(path).status_code
    except httpx.HTTPError:
        return -1


def test_health_is_503_while_the_database_is_down_and_recovers_by_itself(embedded: EmbeddedPostgres) -> None:
    dsn = embedded.start()
    Migrator(dsn).migrate()
    settings = Settings(dsn=dsn, api_token=ADMIN_TOKEN)
    with serve_api(settings) as api, api.client() as client:
        assert client.get("/health").status_code == 200
        assert client.post("/jobs", json={"task": "before"}).status_code == 201

        embedded.stop()
        wait_until(lambda: _status(client, "/health") == 503, timeout=30, message="health to turn 503")
        down = client.get("/health")
        assert down.headers["retry-after"] == "5"
        assert down.json()["status"] == "unavailable" and down.json()["database"] is False
        jobs = client.get("/jobs")
        assert jobs.status_code == 503 and jobs.json()["error"]["code"] == "database_unavailable"
        assert "retry-after" in jobs.headers
        created = client.post("/jobs", json={"task": "during"})  # the task-registry check meets the outage first
        assert created.status_code == 503 and created.json()["error"]["code"] == "database_unavailable"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "pgsched_database_up 0.0" in metrics.text

        assert embedded.start() == dsn
        wait_until(lambda: _status(client, "/health") == 200, timeout=60, message="health to recover")
        assert [j["task"] for j in client.get("/jobs").json()["items"]] == ["before"]


def test_api_queries_stop_at_the_statement_timeout_with_a_503(api_settings: Settings, dsn: str) -> None:
    settings = api_settings.with_(api_statement_timeout_seconds=0.3)
    with serve_api(settings) as api, api.client() as client:
        job_id = client.post("/jobs", json={"task": "t"}).json()["id"]
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE pgsched.jobs IN ACCESS EXCLUSIVE MODE")
            r = client.get(f"/jobs/{job_id}")
            assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
            blocker.rollback()
        assert client.get(f"/jobs/{job_id}").status_code == 200
