"""Tags and meta on every enqueue path, filters in GET /jobs and `pgsched jobs list`, through partial indexes."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import Pgsched, Settings
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.queries import query
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.factories import register_tasks

LABELS = {"tags": ["billing", "eu"], "meta": {"tenant": "acme", "trace": {"id": "abc"}}}


def _labels(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT tags, meta FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return dict(row)


def test_every_enqueue_path_stores_tags_and_meta(settings: Settings, app: Pgsched, capsys: Any) -> None:
    dsn = settings.require_dsn()
    register_tasks(dsn, "t")
    ids: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        ids["sql insert"] = conn.execute(
            "INSERT INTO pgsched.jobs (task, tags, meta) VALUES ('t', %s, %s) RETURNING id",
            [LABELS["tags"], json.dumps(LABELS["meta"])],
        ).fetchone()["id"]
        ids["sql enqueue"] = conn.execute(
            "SELECT pgsched.enqueue('t', tags => %s, meta => %s::jsonb) AS id",
            [LABELS["tags"], json.dumps(LABELS["meta"])],
        ).fetchone()["id"]
    with serve_api(settings.with_(api_token=ADMIN_TOKEN), tasks=()) as api, api.client() as http:
        ids["rest"] = http.post("/jobs", json={"task": "t", **LABELS}).json()["id"]
        ids["rest batch"] = http.post("/jobs/batch", json={"jobs": [{"task": "t", **LABELS}]}).json()["ids"][0]
    argv = ["--dsn", dsn, "enqueue", "t", "--tag", "billing", "--tag", "eu", "--meta", json.dumps(LABELS["meta"])]
    assert run_cli(cli, argv) == 0
    ids["cli"] = int(capsys.readouterr().out.strip())
    ids["app.enqueue"] = app.enqueue("t", {}, **LABELS)
    ids["enqueue_many (COPY)"] = app.enqueue_many([{"task": "t", **LABELS}])[0]
    ids["enqueue_many (run keys)"] = app.enqueue_many([{"task": "t", "run_key": "k", **LABELS}])[0]
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        assert {path: _labels(conn, i) for path, i in ids.items()} == dict.fromkeys(ids, LABELS)


def test_bad_tags_and_meta_name_their_field(settings: Settings, app: Pgsched) -> None:
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
        for body, field in (
            ({"task": "t", "tags": "billing"}, "tags"),
            ({"task": "t", "tags": [1]}, "tags"),
            ({"task": "t", "tags": [str(i) for i in range(33)]}, "tags"),
            ({"task": "t", "meta": [1]}, "meta"),
        ):
            response = http.post("/jobs", json=body)
            assert response.status_code == 422 and response.json()["error"]["field"] == field, body
        assert http.get("/jobs", params={"meta": "{nope"}).json()["error"]["field"] == "meta"


def test_lists_filter_by_tag_and_meta(settings: Settings, app: Pgsched, capsys: Any) -> None:
    dsn = settings.require_dsn()
    both = app.enqueue("t", {}, tags=["billing", "eu"], meta={"tenant": "acme"})
    billing = app.enqueue("t", {}, tags=["billing"], meta={"tenant": "other"})
    plain = app.enqueue("t", {})
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:

        def listed(**params: Any) -> list[int]:
            response = http.get("/jobs", params=params)
            assert response.status_code == 200, response.text
            return [j["id"] for j in response.json()["items"]]

        assert listed(tag="billing") == [billing, both]
        assert listed(tag=["billing", "eu"]) == [both]
        assert listed(meta=json.dumps({"tenant": "acme"})) == [both]
        assert listed(tag="billing", meta=json.dumps({"tenant": "other"})) == [billing]
        assert listed() == [plain, billing, both]
        board = http.get("/dashboard/api/jobs", params={"tag": "billing", "meta": json.dumps({"tenant": "acme"})})
        assert [j["id"] for j in board.json()["items"]] == [both] and board.json()["items"][0]["tags"] == [
            "billing",
            "eu",
        ]
        board = http.get("/dashboard/api/jobs", params={"meta": json.dumps({"tenant": "other"}), "queue": "default"})
        assert [j["id"] for j in board.json()["items"]] == [billing]
        shown = http.get(f"/jobs/{both}").json()
        assert (shown["tags"], shown["meta"]) == (["billing", "eu"], {"tenant": "acme"})
    assert run_cli(cli, ["--dsn", dsn, "jobs", "list", "--tag", "eu", "--json"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["items"]] == [both]
    assert run_cli(cli, ["--dsn", dsn, "jobs", "list", "--meta", '{"tenant": "other"}', "--json"]) == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["items"]] == [billing]
    assert run_cli(cli, ["--dsn", dsn, "jobs", "show", str(both)]) == 0
    assert '["billing", "eu"]' in capsys.readouterr().out


def test_label_filters_read_only_labelled_jobs_through_their_partial_indexes(dsn: str) -> None:
    """10,000 unlabelled jobs are in no label index: a filtered page visits the labelled rows only."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsched.jobs (task) SELECT 't' FROM generate_series(1, 10000)")
        conn.execute(
            "INSERT INTO pgsched.jobs (task, tags, meta) SELECT 't', '{x}', '{\"k\": 1}' FROM generate_series(1, 20)"
        )
        conn.execute("VACUUM ANALYZE pgsched.jobs")
        sizes = dict(
            conn.execute(
                "SELECT c.relname, c.reltuples FROM pg_class c WHERE c.relname IN ('jobs_tags_idx', 'jobs_meta_idx')"
            ).fetchall()
        )
        assert all(n <= 20 for n in sizes.values()), sizes
        params = {
            "state": None, "queue": None, "task": None, "before_id": None, "limit": 50,
            "tags": ["x"], "meta": "{}",
        }  # fmt: skip
        for extra in ({}, {"tags": [], "meta": '{"k": 1}'}):
            text = query("job_list_labelled")
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, {**params, **extra}).fetchone()[0][0]["Plan"]  # type: ignore[index]
            assert plan["Actual Rows"] == 20
            assert _rows_read(plan) <= 3 * 20, (extra, plan)  # index, heap, then primary key: never the 10,000


def _rows_read(node: dict[str, Any]) -> int:
    seen = 0
    if node.get("Relation Name") == "jobs" or str(node.get("Index Name", "")).startswith("jobs"):
        seen += int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))
        seen += int(node.get("Rows Removed by Index Recheck", 0))
    return seen + sum(_rows_read(child) for child in node.get("Plans", []))
