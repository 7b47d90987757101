"""``GET /retention`` (read scope) and ``PUT`` / ``DELETE /retention/{queue}/{state}`` (admin scope): a queue's
retention per final state over REST, with 4xx JSON errors naming the field and the endpoints in the document."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.api.conftest import LiveApi

DAY = 86400


def _token(client: httpx.Client, scope: str) -> str:
    r = client.post("/tokens", json={"name": f"retention-{scope}", "scope": scope})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _own_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.retention WHERE queue <> '*'").fetchone()
    assert row is not None
    return int(row["n"])


def test_put_list_and_delete_a_queues_retention(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    r = client.put("/retention/audit/succeeded", json={"keep_seconds": 90 * DAY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("queue", "state", "keep_seconds", "keep", "source", "warning")} == {
        "queue": "audit",
        "state": "succeeded",
        "keep_seconds": 90 * DAY,
        "keep": "90d",
        "source": "queue",
        "warning": None,
    }
    assert client.put("/retention/audit/succeeded", json={"keep_seconds": 1.5 * 3600}).json()["keep"] == "1h 30m"

    items = client.get("/retention").json()["items"]
    assert [(i["queue"], i["state"]) for i in items] == [
        ("*", "succeeded"),
        ("*", "dead"),
        ("*", "cancelled"),
        ("audit", "succeeded"),
    ]
    effective = client.get("/retention", params={"queue": "audit"}).json()["items"]
    assert [(i["state"], i["keep_seconds"], i["source"]) for i in effective] == [
        ("succeeded", 5400, "queue"),
        ("dead", 30 * DAY, "default"),
        ("cancelled", 7 * DAY, "default"),
    ]
    assert client.get("/retention", params={"queue": "*"}).json()["items"][0]["keep_seconds"] == DAY

    assert client.delete("/retention/audit/succeeded").status_code == 204
    gone = client.delete("/retention/audit/succeeded")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert _own_rows(conn) == 0


def test_bad_input_gets_a_4xx_naming_the_field_and_writes_nothing(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    cases: list[tuple[str, Any, int, str]] = [
        ("/retention/audit/succeeded", {"keep_seconds": 0}, 422, "keep_seconds"),
        ("/retention/audit/succeeded", {"keep_seconds": "90d"}, 422, "keep_seconds"),
        ("/retention/audit/succeeded", {"keep_seconds": 3661 * DAY}, 422, "keep_seconds"),
        ("/retention/audit/succeeded", {"keep_seconds": 10**400}, 422, "keep_seconds"),  # past a float's range
        ("/retention/audit/succeeded", {}, 422, "keep_seconds"),
        ("/retention/audit/succeeded", {"keep_seconds": DAY, "keep": "1d"}, 422, "keep"),
        ("/retention/audit/queued", {"keep_seconds": DAY}, 422, "state"),
        ("/retention/Audit/succeeded", {"keep_seconds": DAY}, 422, "queue"),
        ("/retention/*/succeeded", {"keep_seconds": DAY}, 422, "queue"),
    ]
    for path, body, status, field in cases:
        r = client.put(path, json=body)
        assert (r.status_code, r.json()["error"]["field"]) == (status, field), (path, body, r.text)
    star = client.put("/retention/*/dead", json={"keep_seconds": DAY}).json()["error"]["message"]
    assert "PGSCHED_RETENTION_DEAD_SECONDS" in star
    assert client.delete("/retention/audit/running").json()["error"]["field"] == "state"
    listed = client.get("/retention", params={"queue": "No Queue"})
    assert listed.status_code == 400 and listed.json()["error"]["field"] == "queue"
    assert client.get("/retention", params={"state": "dead"}).json()["error"]["field"] == "state"  # unknown parameter
    assert _own_rows(conn) == 0


def test_reads_need_the_read_scope_and_changes_the_admin_scope(
    client: httpx.Client, live_api: LiveApi, conn: psycopg.Connection[Any]
) -> None:
    read, write = _token(client, "read"), _token(client, "write")
    with live_api.client(read) as r, live_api.client(write) as w, live_api.client(token=None) as anon:
        assert anon.get("/retention").status_code == 401
        assert r.get("/retention").status_code == 200
        for c in (r, w):
            denied = c.put("/retention/audit/succeeded", json={"keep_seconds": DAY})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
            assert c.delete("/retention/audit/succeeded").status_code == 403
    assert _own_rows(conn) == 0


def test_a_retention_beyond_the_partitions_ahead_is_set_with_a_warning(client: httpx.Client) -> None:
    r = client.put("/retention/audit/dead", json={"keep_seconds": 3650 * DAY})
    assert r.status_code == 200
    assert "needs 3652 time partitions of 1d ahead" in r.json()["warning"]


def test_the_document_lists_the_retention_endpoints_with_their_scopes_and_limits(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    item = doc["paths"]["/retention/{queue}/{state}"]
    assert set(item) == {"parameters", "put", "delete"} and "get" in doc["paths"]["/retention"]
    put = doc["components"]["schemas"]["RetentionPut"]
    assert put["required"] == ["keep_seconds"] and put["properties"]["keep_seconds"]["maximum"] == 3660 * DAY
