"""/queues, /workers, /leader, /metrics and the placeholder page, against rows a real cluster would write."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgsched.config import Settings
from tests.api.conftest import LiveApi, serve_api
from tests.support.factories import insert_jobs


@pytest.fixture
def live_api(api_settings: Settings) -> Iterator[LiveApi]:
    """No task registry rows here: they would show a worker in /workers and /health."""
    with serve_api(api_settings, tasks=()) as api:
        yield api


def _register_worker(conn: psycopg.Connection[Any], *, leader: bool) -> int:
    """Register this test session as a live worker: a row plus its liveness lock, as a worker would."""
    row = conn.execute(
        "INSERT INTO pgsched.workers (host, pid, queues, concurrency, is_leader)"
        " VALUES (%s, %s, %s, 4, %s) RETURNING id",
        [socket.gethostname(), os.getpid(), ["default", "emails"], leader],
    ).fetchone()
    conn.execute("SELECT pg_advisory_lock(pgsched.lock_namespace(), %s::int)", [row["id"]])
    if leader:
        conn.execute("SELECT pg_advisory_lock(pgsched.lock_namespace(), 0)")
    return int(row["id"])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_queues_report_depth_by_state_and_oldest_due_age(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    insert_jobs(conn, 3, queue="emails")
    insert_jobs(conn, 2, queue="emails", state="dead", attempt=5, finished_at=datetime.now(UTC))
    insert_jobs(conn, 1, queue="reports", run_at="2999-01-01T00:00:00+00:00")
    items = {q["queue"]: q for q in client.get("/queues").json()["items"]}
    assert items["emails"]["due"] == 3 and items["emails"]["dead"] == 2
    assert items["emails"]["oldest_due_seconds"] >= 0
    assert items["reports"]["scheduled"] == 1 and items["reports"]["oldest_due_seconds"] is None


def test_workers_and_leader_show_registered_live_processes(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    assert client.get("/leader").json() == {"leader": None}
    assert client.get("/workers").json() == {"items": []}
    worker_id = _register_worker(conn, leader=True)
    [worker] = client.get("/workers").json()["items"]
    assert worker["id"] == worker_id and worker["alive"] is True and worker["is_leader"] is True
    assert worker["queues"] == ["default", "emails"] and worker["heartbeat_age_seconds"] >= 0
    assert client.get("/leader").json()["leader"]["id"] == worker_id


def test_health_reports_leader_and_listener(live_api: LiveApi, dsn: str) -> None:
    with live_api.client(token=None) as anon:
        assert anon.get("/health").json() == {
            "status": "degraded",
            "database": True,
            "leader": False,
            "listener": False,
            "workers_alive": 0,
            "dedupe_cache": {"state": "disabled"},
        }
        with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as holder:
            _register_worker(holder, leader=True)
            body = anon.get("/health").json()
        assert body["status"] == "ok" and body["leader"] is True and body["workers_alive"] == 1


def test_metrics_expose_database_gauges_and_worker_counters(live_api: LiveApi, conn: psycopg.Connection[Any]) -> None:
    insert_jobs(conn, 4, queue="emails")
    insert_jobs(conn, 2, queue="emails", state="dead", attempt=5, finished_at=datetime.now(UTC))
    with live_api.client() as reader:
        r = reader.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)
    assert samples[("pgsched_database_up", ())] == 1
    assert samples[("pgsched_queue_jobs", (("queue", "emails"), ("state", "due")))] == 4
    assert samples[("pgsched_queue_jobs", (("queue", "emails"), ("state", "dead")))] == 2
    assert samples[("pgsched_dead_jobs", ())] == 2
    assert samples[("pgsched_leader_present", ())] == 0
    assert samples[("pgsched_workers_alive", ())] == 0
    assert ("pgsched_queue_oldest_due_age_seconds", (("queue", "emails"),)) in samples
    assert "pgsched_job_duration_seconds" in r.text and "pgsched_jobs_started_total" in r.text


def test_the_root_page_is_a_placeholder_and_needs_no_token(live_api: LiveApi) -> None:
    with live_api.client(token=None) as anon:
        r = anon.get("/")
    assert r.status_code == 200 and "pgsched" in r.text and r.headers["content-type"].startswith("text/html")


def test_patch_queue_sets_limits_and_pause_and_get_shows_them(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    insert_jobs(conn, 1, queue="emails")
    reply = client.patch("/queues/emails", json={"concurrency": 3, "rate_limit": 50, "rate_period_seconds": 60})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "queue": "emails",
        "paused": False,
        "concurrency": 3,
        "rate_limit": 50,
        "rate_period_seconds": 60.0,
        "rate_burst": None,
    }
    assert client.patch("/queues/emails", json={"paused": True}).json()["concurrency"] == 3  # others kept
    item = {q["queue"]: q for q in client.get("/queues").json()["items"]}["emails"]
    assert (item["paused"], item["concurrency_limit"], item["rate_limit"], item["rate_period_seconds"]) == (
        True,
        3,
        50,
        60.0,
    )
    row = conn.execute("SELECT paused, concurrency FROM pgsched.queues WHERE name = 'emails'").fetchone()
    assert row == {"paused": True, "concurrency": 3}
    assert client.patch("/queues/emails", json={"concurrency": None}).json()["concurrency"] is None


def test_patch_queue_rejects_bad_settings_naming_the_field(client: httpx.Client) -> None:
    for body, field in [
        ({"concurrency": 0}, "concurrency"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"paused": "yes"}, "paused"),
        ({"rate_period_seconds": 0}, "rate_period_seconds"),
        ({"colour": 1}, "colour"),
    ]:
        reply = client.patch("/queues/emails", json=body)
        assert reply.status_code == 422, (body, reply.text)
        assert field in reply.text
    assert client.patch("/queues/Bad Name", json={"paused": True}).status_code == 422
