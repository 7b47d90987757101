"""Job endpoints through a real uvicorn server and the real database."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.support.factories import insert_jobs


def test_post_jobs_creates_a_job_and_returns_it_with_201(client: httpx.Client) -> None:
    r = client.post("/jobs", json={"task": "send_email", "args": {"to": "a@b.c"}, "queue": "emails", "priority": 5})
    assert r.status_code == 201
    job = r.json()
    assert job["task"] == "send_email" and job["args"] == {"to": "a@b.c"} and job["queue"] == "emails"
    assert job["state"] == "queued" and job["priority"] == 5 and isinstance(job["id"], int)


def test_post_jobs_with_a_taken_run_key_returns_the_existing_job_with_200(client: httpx.Client) -> None:
    first = client.post("/jobs", json={"task": "t", "run_key": "welcome:42"})
    second = client.post("/jobs", json={"task": "t", "run_key": "welcome:42", "args": {"other": 1}})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["args"] == {}


def test_post_jobs_accepts_run_at_delay_seconds_and_timeout(client: httpx.Client) -> None:
    at = client.post("/jobs", json={"task": "t", "run_at": "2031-01-02T03:04:05+02:00", "timeout": 2.5}).json()
    assert at["run_at"].startswith("2031-01-02T01:04:05") and at["timeout"] == 2.5
    later = client.post("/jobs", json={"task": "t", "delay_seconds": 3600}).json()
    assert later["run_at"] > later["created_at"]


def test_post_jobs_batch_inserts_every_job_and_returns_their_ids(client: httpx.Client) -> None:
    r = client.post("/jobs/batch", json={"jobs": [{"task": "a"}, {"task": "b", "run_key": "k1"}, {"task": "c"}]})
    assert r.status_code == 201
    ids = r.json()["ids"]
    assert len(ids) == 3
    assert [client.get(f"/jobs/{i}").json()["task"] for i in ids] == ["a", "b", "c"]


def test_post_jobs_batch_names_the_bad_item_and_writes_nothing(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    r = client.post("/jobs/batch", json={"jobs": [{"task": "ok"}, {"task": "bad task"}]})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "jobs[1].task"
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()["n"] == 0


def test_get_job_returns_the_job_with_its_attempt_history(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    [job_id] = insert_jobs(
        conn,
        1,
        task="flaky",
        state="dead",
        attempt=2,
        max_attempts=2,
        errors=[{"attempt": 1, "error": "boom"}, {"attempt": 2, "error": "bang"}],
    )
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "dead" and [e["error"] for e in job["errors"]] == ["boom", "bang"]


def test_get_job_of_a_missing_or_impossible_id_is_404(client: httpx.Client) -> None:
    for path in ("/jobs/999999", "/jobs/abc", "/jobs/99999999999999999999999", "/jobs/0", "/jobs/-1"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


def test_patch_changes_a_queued_job(client: httpx.Client) -> None:
    job = client.post("/jobs", json={"task": "t"}).json()
    r = client.patch(
        f"/jobs/{job['id']}",
        json={"priority": 9, "queue": "other", "args": {"x": 1}, "run_at": "2040-01-01T00:00:00+00:00"},
    )
    assert r.status_code == 200
    changed = r.json()
    assert (changed["priority"], changed["queue"], changed["args"]) == (9, "other", {"x": 1})
    assert changed["run_at"].startswith("2040-01-01")


def test_patch_refuses_a_running_job_with_409_and_unknown_fields_with_422(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    [running] = insert_jobs(conn, 1, state="running", attempt=1)
    assert client.patch(f"/jobs/{running}", json={"priority": 1}).status_code == 409
    queued = client.post("/jobs", json={"task": "t"}).json()["id"]
    r = client.patch(f"/jobs/{queued}", json={"state": "succeeded"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "state"
    assert client.patch(f"/jobs/{queued}", json={"priority": 5000}).json()["error"]["field"] == "priority"
    assert client.patch("/jobs/424242", json={"priority": 1}).status_code == 404


def test_cancel_retry_and_delete_walk_a_job_through_its_states(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t"}).json()["id"]
    assert client.delete(f"/jobs/{job_id}").status_code == 409  # not finished
    r = client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 409  # already finished
    r = client.post(f"/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["state"] == "queued"
    client.post(f"/jobs/{job_id}/cancel")
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.post(f"/jobs/{job_id}/retry").status_code == 404


def test_list_jobs_filters_by_state_queue_and_task(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    insert_jobs(conn, 3, task="a", queue="q1")
    insert_jobs(conn, 2, task="b", queue="q2", state="dead", attempt=5)
    assert len(client.get("/jobs").json()["items"]) == 5
    assert {j["task"] for j in client.get("/jobs", params={"state": "dead"}).json()["items"]} == {"b"}
    assert len(client.get("/jobs", params={"queue": "q1", "task": "a"}).json()["items"]) == 3
    assert client.get("/jobs", params={"queue": "q1", "task": "b"}).json() == {"items": [], "next_cursor": None}


def test_dead_letter_endpoints_list_retry_and_purge(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    insert_jobs(conn, 2, task="x", queue="a", state="dead", attempt=5)
    insert_jobs(conn, 3, task="y", queue="b", state="dead", attempt=5)
    insert_jobs(conn, 1, task="z")
    assert len(client.get("/dead").json()["items"]) == 5
    assert len(client.get("/dead", params={"queue": "b"}).json()["items"]) == 3
    retried = client.post("/dead/retry", json={"queue": "a"}).json()
    assert retried["retried"] == 2
    assert client.get(f"/jobs/{retried['ids'][0]}").json()["state"] == "queued"
    assert client.post("/dead/purge").json() == {"purged": 3}
    assert client.get("/dead").json()["items"] == []
    assert client.post("/dead/retry", json={"queue": "BAD Q"}).status_code == 422


def test_get_job_shows_the_result_of_a_succeeded_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    [done] = insert_jobs(conn, 1, task="report", state="succeeded", result={"rows": [1, 2], "ok": True})
    [queued] = insert_jobs(conn, 1, task="report")
    assert client.get(f"/jobs/{done}").json()["result"] == {"rows": [1, 2], "ok": True}
    assert client.get(f"/jobs/{queued}").json()["result"] is None
