"""Every enqueue surface takes a run key's scope, period and conflict policy, and refuses bad ones naming the field."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgsched import Pgsched, Settings
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.client import Client
from pgsched.errors import ValidationError
from tests.api.conftest import ADMIN_TOKEN, serve_api

SURFACES = ["sql", "python", "python-async", "python-many", "python-many-async", "task", "rest", "rest-batch", "cli"]
# enqueue(run_key, args, options) -> id, where options use the Python names (run_key_period in seconds).
Enqueue = Callable[[str, dict[str, Any], dict[str, Any]], int]
Conn = psycopg.Connection[dict[str, Any]]


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if "run_key_period" in out:
        out["run_key_period_seconds"] = out.pop("run_key_period")
    return out


def _sql(conn: Conn, key: str, args: dict[str, Any], options: dict[str, Any]) -> int:
    row = conn.execute(
        """SELECT pgsched.enqueue('t', %(args)s::jsonb, run_key => %(key)s, run_key_scope => %(scope)s,
                  run_key_period => make_interval(secs => %(period)s), on_conflict => coalesce(%(policy)s, 'existing'))
                  AS id""",
        {
            "args": json.dumps(args),
            "key": key,
            "scope": options.get("run_key_scope"),
            "period": options.get("run_key_period"),
            "policy": options.get("on_conflict"),
        },
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _rest(http: httpx.Client, batch: bool, key: str, args: dict[str, Any], options: dict[str, Any]) -> int:
    body = {"task": "t", "args": args, "run_key": key, **_json_options(options)}
    if batch:
        response = http.post("/jobs/batch", json={"jobs": [body]})
        assert response.status_code == 201, response.text
        return int(response.json()["ids"][0])
    response = http.post("/jobs", json=body)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


def _cli(dsn: str, capsys: Any, key: str, args: dict[str, Any], options: dict[str, Any]) -> int:
    argv = ["--dsn", dsn, "enqueue", "t", "--allow-unknown", "--args", json.dumps(args), "--key", key]
    if "run_key_scope" in options:
        argv += ["--key-scope", options["run_key_scope"]]
    if "run_key_period" in options:
        argv += ["--key-period", f"{options['run_key_period']}s"]
    if "on_conflict" in options:
        argv += ["--on-conflict", options["on_conflict"]]
    code = run_cli(cli, argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return int(out.split()[0])


async def _async(settings: Settings, many: bool, key: str, args: dict[str, Any], options: dict[str, Any]) -> int:
    client = Client(settings)
    try:
        if many:
            (job_id,) = await client.enqueue_many_async([{"task": "t", "args": args, "run_key": key, **options}])
            return job_id
        return await client.enqueue_async("t", args, run_key=key, **options)
    finally:
        await client.aclose()


@contextlib.contextmanager
def enqueuer(surface: str, settings: Settings, conn: Conn, capsys: Any) -> Iterator[Enqueue]:
    if surface.startswith("rest"):
        with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
            yield lambda k, a, o: _rest(http, surface == "rest-batch", k, a, o)
        return
    if surface == "sql":
        yield lambda k, a, o: _sql(conn, k, a, o)
        return
    if surface == "cli":
        yield lambda k, a, o: _cli(settings.require_dsn(), capsys, k, a, o)
        return
    if surface.startswith("python-"):
        many = surface == "python-many-async"
        if surface == "python-many":
            client = Client(settings)
            try:
                yield lambda k, a, o: client.enqueue_many([{"task": "t", "args": a, "run_key": k, **o}])[0]
            finally:
                client.close()
            return
        yield lambda k, a, o: asyncio.run(_async(settings, many, k, a, o))
        return
    app = Pgsched(settings=settings)
    try:
        if surface == "task":
            t = app.task(name="t")(lambda **kwargs: None)
            yield lambda k, a, o: t.enqueue(**a, run_key=k, **o)
        else:
            yield lambda k, a, o: app.enqueue("t", a, run_key=k, **o)
    finally:
        app.close()


def finish(conn: Conn, job_id: int) -> None:
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [job_id])


EXPECTED_AFTER_FINISH = {"retention": "same", "active": "new", "period": "same"}


@pytest.mark.parametrize("scope", ["retention", "active", "period"])
@pytest.mark.parametrize("surface", SURFACES)
def test_each_surface_holds_a_key_over_the_scope_it_names(
    surface: str, scope: str, settings: Settings, conn: Conn, capsys: Any
) -> None:
    options: dict[str, Any] = {"run_key_scope": scope}
    if scope == "period":
        options["run_key_period"] = 3600
    with enqueuer(surface, settings, conn, capsys) as enqueue:
        first = enqueue("k", {"n": 1}, options)
        assert enqueue("k", {"n": 2}, options) == first
        finish(conn, first)
        again = enqueue("k", {"n": 3}, options)
    assert (again == first) == (EXPECTED_AFTER_FINISH[scope] == "same")
    row = conn.execute("SELECT scope, job_id FROM pgsched.run_keys WHERE run_key = 'k'").fetchone()
    assert row == {"scope": scope, "job_id": again}


@pytest.mark.parametrize("surface", SURFACES)
def test_each_surface_replaces_a_waiting_holders_args(
    surface: str, settings: Settings, conn: Conn, capsys: Any
) -> None:
    options = {"run_key_scope": "active", "on_conflict": "replace"}
    with enqueuer(surface, settings, conn, capsys) as enqueue:
        first = enqueue("d", {"n": 1}, options)
        assert enqueue("d", {"n": 2}, options) == first
        conn.execute("UPDATE pgsched.jobs SET state = 'running', started_at = now() WHERE id = %s", [first])
        second = enqueue("d", {"n": 3}, options)
    assert second != first
    rows = conn.execute("SELECT id, args FROM pgsched.jobs ORDER BY id").fetchall()
    assert rows == [{"id": first, "args": {"n": 2}}, {"id": second, "args": {"n": 3}}]


def test_the_default_is_retention_on_every_python_surface(app: Pgsched, conn: Conn) -> None:
    first = app.enqueue("t", run_key="welcome:42")
    finish(conn, first)
    assert app.enqueue("t", {"x": 1}, run_key="welcome:42") == first
    assert app.enqueue_many([{"task": "t", "run_key": "welcome:42"}]) == [first]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"run_key": "k", "run_key_scope": "forever"}, "run_key_scope"),
        ({"run_key": "k", "run_key_scope": "period"}, "run_key_period"),
        ({"run_key": "k", "run_key_scope": "active", "run_key_period": 60}, "run_key_period"),
        ({"run_key": "k", "run_key_period": -1}, "run_key_period"),
        ({"run_key": "k", "on_conflict": "update"}, "on_conflict"),
        ({"run_key_scope": "active"}, "run_key_scope"),
        ({"on_conflict": "replace"}, "on_conflict"),
    ],
)
def test_python_refuses_a_bad_scope_period_or_policy_naming_the_field(
    app: Pgsched, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        app.enqueue("t", **options)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"run_key": "k", "run_key_scope": "forever"}, "run_key_scope"),
        ({"run_key": "k", "run_key_scope": "period"}, "run_key_period_seconds"),
        ({"run_key": "k", "run_key_period_seconds": 0}, "run_key_period_seconds"),
        ({"run_key": "k", "run_key_period_seconds": "1h"}, "run_key_period_seconds"),
        ({"run_key": "k", "run_key_period": 60}, "run_key_period"),
        ({"run_key": "k", "on_conflict": "update"}, "on_conflict"),
        ({"on_conflict": "replace"}, "on_conflict"),
    ],
)
def test_rest_refuses_a_bad_scope_period_or_policy_with_422_naming_the_field(
    settings: Settings, body: dict[str, Any], field: str
) -> None:
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
        response = http.post("/jobs", json={"task": "t", **body})
        batch = http.post("/jobs/batch", json={"jobs": [{"task": "t", **body}]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert batch.status_code == 422, batch.text
    assert batch.json()["error"]["field"] == f"jobs[0].{field}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--key", "k", "--key-scope", "forever"],
        ["--key", "k", "--key-period", "soon"],
        ["--key", "k", "--on-conflict", "update"],
        ["--key-scope", "active"],
    ],
)
def test_the_cli_refuses_a_bad_scope_period_or_policy_in_one_line(dsn: str, capsys: Any, argv: list[str]) -> None:
    code = run_cli(cli, ["--dsn", dsn, "enqueue", "t", "--allow-unknown", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("Error") and "\n" not in err


def test_a_jobs_json_shows_its_run_key_scope_and_period(app: Pgsched, conn: Conn) -> None:
    period = app.client.get_job(app.enqueue("t", run_key="p", run_key_period=90))
    active = app.client.get_job(app.enqueue("t", run_key="a", run_key_scope="active"))
    conn.execute("INSERT INTO pgsched.jobs (task, run_key) VALUES ('t', 'plain')")  # an old-style row: retention
    row = conn.execute("SELECT id FROM pgsched.jobs WHERE run_key = 'plain'").fetchone()
    assert row is not None
    plain = app.client.get_job(row["id"])
    unkeyed = app.client.get_job(app.enqueue("t"))
    assert period is not None and active is not None and plain is not None and unkeyed is not None
    shown = [
        (j.to_dict()["run_key_scope"], j.to_dict()["run_key_period_seconds"]) for j in (period, active, plain, unkeyed)
    ]
    assert shown == [("period", 90.0), ("active", None), ("retention", None), (None, None)]
