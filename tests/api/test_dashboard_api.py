"""The dashboard's own endpoints: scope, job views with keyset pages, search, capped counts, bulk actions, charts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.api.conftest import LiveApi
from tests.support.factories import insert_jobs
from tests.support.rollup import rollup_caught_up


def _token(client: httpx.Client, scope: str) -> str:
    r = client.post("/tokens", json={"name": f"dash-{scope}", "scope": scope})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _all_pages(client: httpx.Client, **params: Any) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        page = client.get("/dashboard/api/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids += [j["id"] for j in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


def test_whoami_names_the_tokens_scope_and_bulk_actions_need_write(client: httpx.Client, live_api: LiveApi) -> None:
    assert client.get("/dashboard/api/whoami").json() == {"scope": "admin", "auth": True}
    with live_api.client(_token(client, "read")) as reader, live_api.client(_token(client, "write")) as writer:
        assert reader.get("/dashboard/api/whoami").json()["scope"] == "read"
        assert writer.get("/dashboard/api/whoami").json()["scope"] == "write"
        assert reader.post("/dashboard/api/jobs/bulk", json={"action": "retry", "ids": [1]}).status_code == 403
    with live_api.client(None) as anonymous:
        assert anonymous.get("/dashboard/api/whoami").status_code == 401


def test_each_view_pages_by_keyset_and_shows_every_row_once(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    done = insert_jobs(conn, 23, state="succeeded", attempt=1)
    conn.execute(
        "UPDATE pgsched.jobs SET finished_at = now() - make_interval(secs => (id %% 5)) WHERE id = ANY(%s)", [done]
    )  # ties on finished_at: the id breaks them
    later = insert_jobs(conn, 4, run_at="2999-01-01T00:00:00+00:00")
    retrying = insert_jobs(conn, 3, attempt=1, run_at="2999-01-01T00:00:00+00:00")
    due = insert_jobs(conn, 2)
    assert sorted(_all_pages(client, view="succeeded", limit=5)) == done
    assert sorted(_all_pages(client, view="scheduled", limit=2)) == later + retrying
    assert sorted(_all_pages(client, view="retrying", limit=2)) == retrying
    assert sorted(_all_pages(client, view="available", limit=1)) == due
    assert _all_pages(client, view="all", limit=7) == sorted(done + later + retrying + due, reverse=True)
    assert client.get("/dashboard/api/counts").json() == {"retrying": 3, "retrying_capped": False}


def test_a_list_row_carries_a_short_preview_of_large_args(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    (big,) = insert_jobs(conn, 1, args={"blob": "x" * (2 * 1024 * 1024)})
    (row,) = client.get("/dashboard/api/jobs").json()["items"]
    assert row["id"] == big and len(row["args_preview"]) == 300 and row["args_bytes"] > 2 * 1024 * 1024


def test_jobs_are_found_by_args_containment_and_by_run_key(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    (match,) = insert_jobs(conn, 1, args={"user_id": 42, "kind": "welcome"}, run_key="welcome:42")
    insert_jobs(conn, 3, args={"user_id": 7})
    found = client.get("/dashboard/api/jobs", params={"args": '{"user_id": 42}'}).json()
    assert [j["id"] for j in found["items"]] == [match]
    assert client.get("/dashboard/api/run-key", params={"run_key": "welcome:42"}).json() == {"id": match}
    assert client.get("/dashboard/api/run-key", params={"run_key": "nope"}).status_code == 404
    assert client.get("/dashboard/api/jobs", params={"args": "[1]"}).json()["error"]["field"] == "args"
    assert client.get("/dashboard/api/jobs", params={"args": '{"a": "\\u0000"}'}).status_code == 400
    assert client.get("/dashboard/api/run-key", params={"run_key": "a\x00b"}).status_code == 400


def test_bulk_retry_reports_each_job_and_refuses_the_running_one(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    dead = insert_jobs(conn, 2, state="dead", attempt=3, max_attempts=3)
    (running,) = insert_jobs(conn, 1, state="running", attempt=1)
    r = client.post("/dashboard/api/jobs/bulk", json={"action": "retry", "ids": [*dead, running, 999999]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["done"] == {str(i): "queued" for i in dead}
    assert set(body["failed"]) == {str(running), "999999"}
    states = conn.execute("SELECT state::text AS s FROM pgsched.jobs WHERE id = ANY(%s)", [dead]).fetchall()
    assert states == [{"s": "queued"}, {"s": "queued"}]
    assert client.post("/dashboard/api/jobs/bulk", json={"action": "explode", "ids": [1]}).status_code == 422


def test_chart_history_comes_from_the_leaders_rollup(
    client: httpx.Client, conn: psycopg.Connection[Any], dsn: str
) -> None:
    assert client.get("/dashboard/api/stats").json()["points"] == []
    at = datetime.now(UTC) - timedelta(minutes=3)
    ids = insert_jobs(conn, 4, queue="emails", state="succeeded", attempt=1)
    conn.execute(
        "UPDATE pgsched.jobs SET run_at = %s, started_at = %s, finished_at = %s WHERE id = ANY(%s)",
        [at - timedelta(seconds=3), at - timedelta(seconds=1), at, ids],
    )

    asyncio.run(rollup_caught_up(dsn))
    (point,) = client.get("/dashboard/api/stats", params={"window": "1h", "queue": "emails"}).json()["points"]
    assert point["succeeded"] == 4 and round(point["wait_avg"], 3) == 2.0 and round(point["run_avg"], 3) == 1.0
    assert client.get("/dashboard/api/stats", params={"queue": "other"}).json()["points"] == []
    assert client.get("/dashboard/api/stats", params={"window": "1y"}).status_code == 400
