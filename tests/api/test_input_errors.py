"""Bad input gets a JSON error naming the problem (400/413/422), never a 500; the limits are explicit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgsched.api.validation import MAX_JSON_DEPTH
from tests.api.conftest import LiveApi


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return dict(body["error"])


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"", b"   ", b"\xff\xfe", b"[1, 2]", b'"text"', b"NaN", b'{"task": Infinity}'],
)
def test_malformed_bodies_get_400(client: httpx.Client, raw: bytes) -> None:
    error = _error(client.post("/jobs", content=raw, headers={"content-type": "application/json"}), 400)
    assert error["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "task"),
        ({"task": 5}, "task"),
        ({"task": "bad name!"}, "task"),
        ({"task": "t", "queue": "UPPER"}, "queue"),
        ({"task": "t", "queue": "a\u0000b"}, "queue"),
        ({"task": "t", "args": [1]}, "args"),
        ({"task": "t", "args": {"k": "nul\u0000"}}, "args"),
        ({"task": "t", "priority": "high"}, "priority"),
        ({"task": "t", "priority": 10**30}, "priority"),
        ({"task": "t", "priority": True}, "priority"),
        ({"task": "t", "max_attempts": 0}, "max_attempts"),
        ({"task": "t", "run_at": "tomorrow"}, "run_at"),
        ({"task": "t", "run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"task": "t", "run_at": 12}, "run_at"),
        ({"task": "t", "delay_seconds": 1e300}, "delay_seconds"),
        ({"task": "t", "delay_seconds": -1}, "delay_seconds"),
        ({"task": "t", "timeout": 0}, "timeout"),
        ({"task": "t", "timeout": 1e300}, "timeout"),
        ({"task": "t", "timeout": 10**400}, "timeout"),  # an integer past a float's range: no OverflowError
        ({"task": "t", "delay_seconds": 10**400}, "delay_seconds"),
        ({"task": "t", "run_key": ""}, "run_key"),
        ({"task": "t", "run_key": "k\u0000"}, "run_key"),
        ({"task": "t", "run_at": "2030-01-01T00:00:00+00:00", "delay_seconds": 5}, "delay_seconds"),
        ({"task": "t", "surprise": 1}, "surprise"),
    ],
)
def test_invalid_job_fields_get_422_naming_the_field(
    client: httpx.Client, conn: psycopg.Connection[Any], body: dict[str, Any], field: str
) -> None:
    assert _error(client.post("/jobs", json=body), 422)["field"] == field
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()["n"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "100000000000000000000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "sleeping"}, "state"),
        ({"queue": "Bad Queue"}, "queue"),
        ({"task": "\u0000"}, "task"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "bmFtZTpmb28"}, "cursor"),  # a schedule cursor is not a job cursor
        ({"cursor": "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"}, "cursor"),  # id beyond bigint
    ],
)
def test_bad_query_parameters_get_400_naming_the_parameter(
    client: httpx.Client, params: dict[str, str], field: str
) -> None:
    assert _error(client.get("/jobs", params=params), 400)["field"] == field


LONE = "\ud800"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/jobs", {"task": "t", "args": {"k": LONE}}, "args.k"),
        ("POST", "/jobs", {"task": "t", "args": {"list": [1, "a" + LONE]}}, "args.list[1]"),
        ("POST", "/jobs", {"task": "t", "args": {LONE: 1}}, "args"),
        ("POST", "/jobs", {"task": "t", "run_key": LONE}, "run_key"),
        ("POST", "/jobs", {"task": "t", "concurrency_key": "c" + LONE}, "concurrency_key"),
        ("POST", "/jobs/batch", {"jobs": [{"task": "t"}, {"task": "t", "run_key": LONE}]}, "jobs[1].run_key"),
        ("PATCH", "/jobs/{id}", {"args": {"k": "\udfff"}}, "args.k"),
        ("POST", "/schedules", {"name": "n", "cron": "* * * * *", "task": "t", "args": {"a": LONE}}, "args.a"),
        ("POST", "/schedules", {"name": "n", "cron": "* * * * *", "task": "t", "timezone": LONE}, "timezone"),
        ("PATCH", "/schedules/nightly", {"queue": LONE}, "queue"),
        ("POST", "/dead/retry", {"task": LONE}, "task"),
    ],
)
def test_lone_surrogates_anywhere_in_a_body_get_422_naming_the_field(
    client: httpx.Client, conn: psycopg.Connection[Any], method: str, path: str, body: Any, field: str
) -> None:
    job_id = client.post("/jobs", json={"task": "seed"}).json()["id"]
    client.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "backup"})
    raw = json.dumps(body)  # ASCII with \ud800 escapes: a lone surrogate httpx itself could not encode
    reply = client.request(method, path.format(id=job_id), content=raw, headers={"content-type": "application/json"})
    assert _error(reply, 422)["field"] == field
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()["n"] == 1


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("PATCH", "/jobs/{id}"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/nightly"),
        ("POST", "/schedules/preview"),
        ("POST", "/dead/retry"),
        ("POST", "/dead/purge"),
        ("PATCH", "/queues/default"),
        ("POST", "/tokens"),
        ("PUT", "/retention/default/succeeded"),
    ],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_json_nested_deeper_than_the_limit_gets_422_on_every_endpoint_with_a_body(
    client: httpx.Client, method: str, path: str, depth: int
) -> None:
    job_id = client.post("/jobs", json={"task": "seed"}).json()["id"]
    client.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "backup"})
    raw = '{"task": "t", "args": ' + _nested(depth - 1) + "}"  # the body itself is the first level
    reply = client.request(method, path.format(id=job_id), content=raw, headers={"content-type": "application/json"})
    error = _error(reply, 422)
    assert "nests deeper than 64" in error["message"]


def test_args_nested_within_the_limit_are_stored(client: httpx.Client) -> None:
    raw = '{"task": "t", "args": ' + _nested(MAX_JSON_DEPTH - 1) + "}"
    assert client.post("/jobs", content=raw, headers={"content-type": "application/json"}).status_code == 201


def test_a_body_over_the_limit_gets_413_before_it_is_read(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    big = b'{"task": "t", "args": {"blob": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    error = _error(client.post("/jobs", content=big, headers={"content-type": "application/json"}), 413)
    assert error["code"] == "payload_too_large"
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()["n"] == 0


def test_a_streamed_body_without_content_length_is_cut_off_at_the_limit(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": "t", "args": {"blob": "'
        for _ in range(64):  # 4 MiB in 64 KiB chunks, far past the 1 MiB limit
            yield b"x" * 65536
        yield b'"}}'

    r = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    _error(r, 413)


def test_unknown_routes_and_methods_get_json_errors(client: httpx.Client) -> None:
    assert _error(client.get("/nope"), 404)["code"] == "not_found"
    assert _error(client.put("/jobs"), 405)["code"] == "method_not_allowed"


def test_schedule_input_errors_name_the_field(client: httpx.Client) -> None:
    base = {"name": "nightly", "cron": "0 3 * * *", "task": "backup"}
    cases = [
        ({**base, "cron": "61 * * * *"}, "cron"),
        ({**base, "cron": "* * *"}, "cron"),
        ({**base, "cron": 5}, "cron"),
        ({**base, "cron": "0 0 30 2 *"}, "cron"),
        ({**base, "timezone": "Mars/Olympus"}, "timezone"),
        ({**base, "timezone": ["UTC"]}, "timezone"),
        ({**base, "name": "bad name"}, "name"),
        ({**base, "name": "a\u0000"}, "name"),
        ({**base, "misfire_policy": ["x"]}, "misfire_policy"),
        ({**base, "misfire_policy": "later"}, "misfire_policy"),
        ({**base, "args": {"x": "\u0000"}}, "args"),
        ({"cron": "* * * * *", "task": "t"}, "name"),
    ]
    for body, field in cases:
        assert _error(client.post("/schedules", json=body), 422)["field"] == field, body


def test_odd_paths_for_schedules_and_tokens_are_404_not_500(client: httpx.Client, live_api: LiveApi) -> None:
    for path in ("/schedules/%00", "/schedules/" + "x" * 300, "/schedules/bad%20name/runs", "/schedules/nope"):
        assert _error(client.get(path), 404)["code"] == "not_found", path
    assert _error(client.delete("/tokens/99999999999999999999999"), 404)["code"] == "not_found"


def test_unknown_query_parameters_get_400_naming_the_parameter(client: httpx.Client) -> None:
    error = _error(client.get("/jobs", params={"status": "queued"}), 400)
    assert error["field"] == "status" and "state" in error["message"]
    assert _error(client.get("/queues", params={"x": "1"}), 400)["field"] == "x"
    assert client.get("/jobs", params={"state": "queued"}).status_code == 200


def test_a_wrong_method_gets_405_listing_every_method_of_the_path(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t"}).json()["id"]
    for path, methods in {
        "/jobs": {"GET", "HEAD", "POST"},
        f"/jobs/{job_id}": {"DELETE", "GET", "HEAD", "PATCH"},
        "/schedules": {"GET", "HEAD", "POST"},
        "/tokens": {"GET", "HEAD", "POST"},
    }.items():
        reply = client.options(path)
        _error(reply, 405)
        assert {m.strip() for m in reply.headers["allow"].split(",")} == methods, path
    assert _error(client.patch("/jobs/batch", json={"jobs": []}), 405)["code"] == "method_not_allowed"
