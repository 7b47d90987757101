"""Workflows over REST (one POST creates all; GET with every step; list; cancel) and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.config import Settings
from tests.api.conftest import ADMIN_TOKEN, serve_api


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as c:
        yield c


def _diamond() -> dict[str, Any]:
    return {
        "name": "etl",
        "steps": [
            {
                "key": "extract",
                "task": "extract",
                "args": {"day": "2026-11-29"},
                "tags": ["etl"],
                "meta": {"by": "cron"},
            },
            {"key": "left", "task": "transform", "after": ["extract"], "queue": "cpu"},
            {"key": "right", "task": "transform", "after": [0], "priority": 5},
            {"key": "load", "task": "load", "after": ["left", "right"], "receive": "parts", "on_failure": "run"},
        ],
    }


def test_one_post_creates_every_step_and_get_shows_them(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    created = client.post("/workflows", json=_diamond())
    assert created.status_code == 201, created.text
    body = created.json()
    ids = body["job_ids"]
    assert body["keys"] == {"extract": ids[0], "left": ids[1], "right": ids[2], "load": ids[3]}
    shown = client.get(f"/workflows/{body['id']}").json()
    assert (shown["name"], shown["kind"], shown["state"], shown["steps"]) == ("etl", "dag", "running", 4)
    steps = {s["id"]: s for s in shown["items"]}
    assert [steps[i]["state"] for i in ids] == ["queued", "waiting", "waiting", "waiting"]
    assert steps[ids[3]]["depends_on"] == [ids[1], ids[2]]
    assert (steps[ids[1]]["queue"], steps[ids[2]]["priority"]) == ("cpu", 5)
    edges = conn.execute(
        "SELECT on_failure, results_arg FROM pgsched.job_dependencies WHERE job_id = %(id)s", {"id": ids[3]}
    ).fetchall()
    assert {(e["on_failure"], e["results_arg"]) for e in edges} == {("run", "parts")}
    labels = conn.execute("SELECT tags, meta FROM pgsched.jobs WHERE id = %(id)s", {"id": ids[0]}).fetchone()
    assert labels is not None and (list(labels["tags"]), labels["meta"]) == (["etl"], {"by": "cron"})
    listed = client.get("/workflows", params={"state": "running"}).json()
    assert [w["id"] for w in listed["items"]] == [body["id"]]


def test_cancel_over_rest_cancels_the_unfinished_steps(client: httpx.Client) -> None:
    body = client.post("/workflows", json=_diamond()).json()
    cancelled = client.post(f"/workflows/{body['id']}/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["cancelled_steps"], cancelled.json()["cancelled"], cancelled.json()["state"]) == (
        4,
        4,
        "cancelled",
    )
    assert client.post("/workflows/999999/cancel").status_code == 404
    assert client.get("/workflows/999999").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"steps": []}, 422, "steps"),
        ({"steps": [{"task": "a", "after": [0]}]}, 409, "steps[0].after"),
        ({"steps": [{"task": "a"}, {"task": "b", "after": ["nope"]}]}, 409, "steps[1].after"),
        ({"steps": [{"task": "a", "after": [True]}]}, 422, "steps[0].after"),
        ({"steps": [{"task": "a", "on_failure": "maybe"}]}, 422, "steps[0].on_failure"),
        ({"steps": [{"task": "a", "on_failure": {}}]}, 422, "steps[0].on_failure"),
        ({"steps": [{"task": "a", "receive": "1x"}]}, 422, "steps[0].receive"),
        ({"steps": [{"task": "a", "receive": "r\n"}]}, 422, "steps[0].receive"),
        ({"steps": [{"task": "a", "run_key": "k"}]}, 422, "steps[0].run_key"),
        ({"steps": [{"task": "a", "key": "x"}, {"task": "b", "key": "x"}]}, 409, "steps[1].key"),
        ({"steps": [{"task": "a", "bogus": 1}]}, 422, "steps[0].bogus"),
        ({"steps": [{"task": "a"}], "kind": "tree"}, 422, "kind"),
        ({"steps": [{"task": "a"}], "extra": 1}, 422, "extra"),
    ],
)
def test_bad_workflows_are_refused_naming_the_field_and_nothing_is_stored(
    client: httpx.Client, conn: psycopg.Connection[Any], body: dict[str, Any], status: int, field: str
) -> None:
    response = client.post("/workflows", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    row = conn.execute("SELECT count(*) AS n FROM pgsched.workflows").fetchone()
    assert row is not None and row["n"] == 0


def _run(dsn: str, capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = run_cli(cli, ["--dsn", dsn, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_lists_shows_and_cancels_workflows(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    row = conn.execute("SELECT pgsched.workflow_create('nightly', 'chain') AS id").fetchone()
    assert row is not None
    wf = row["id"]
    a = conn.execute("SELECT pgsched.workflow_add(%(wf)s, 'a') AS id", {"wf": wf}).fetchone()
    assert a is not None
    conn.execute(
        "SELECT pgsched.workflow_add(%(wf)s, 'b', depends_on => ARRAY[%(a)s]::bigint[])", {"wf": wf, "a": a["id"]}
    )
    code, out, _ = _run(dsn, capsys, "workflows", "list")
    assert code == 0 and "nightly" in out and "0/2" in out
    code, out, _ = _run(dsn, capsys, "workflows", "show", str(wf), "--json")
    shown = json.loads(out)
    assert code == 0 and [s["state"] for s in shown["items"]] == ["queued", "waiting"]
    code, out, _ = _run(dsn, capsys, "workflows", "show", str(wf))
    assert code == 0 and "waiting" in out and str(a["id"]) in out
    code, out, _ = _run(dsn, capsys, "workflows", "cancel", str(wf))
    assert code == 0 and "2 step(s)" in out
    code, _, err = _run(dsn, capsys, "workflows", "show", "424242")
    assert code == 2 and err.strip() == "Error: workflow 424242 does not exist"
