"""The Grafana dashboard next to docker-compose.yml: it parses, every query names a metric the API exports,
and the compose file's monitoring profile provisions it."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pgsched.config import Settings
from pgsched.job_stats import SETTLE
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.factories import insert_jobs
from tests.support.rollup import rollup_caught_up

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "pgsched.json"
METRIC = re.compile(r"\bpgsched_[a-z_]+\b")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the panels and of the template variables."""
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_the_dashboard_parses_and_every_panel_has_a_query() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert METRIC.search(expr), (panel["title"], expr)
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), expr


def test_every_metric_the_dashboard_queries_is_exported_by_the_api(
    settings: Settings, conn: psycopg.Connection[dict[str, Any]], dsn: str
) -> None:
    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    insert_jobs(conn, 1, task="t", state="succeeded", attempt=1, started_at=a_minute_ago, finished_at=a_minute_ago)
    insert_jobs(conn, 1, task="t")  # a queue to report

    row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    asyncio.run(rollup_caught_up(dsn, now=row["now"] + SETTLE + timedelta(seconds=1)))
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as client:
        text = client.get("/metrics").text
    exported = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert "pgsched_cluster_job_duration_seconds_bucket" in exported  # the rollup's totals are there
    named = {name for expr in queries(dashboard()) for name in METRIC.findall(expr)}
    assert named and named <= exported, sorted(named - exported)


def test_the_monitoring_profile_provisions_prometheus_and_the_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name  # `docker compose up` alone starts neither
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), volume
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    provider = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/pgsched.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in mounted
    prometheus = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    api_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "pgsched-api")
    assert api_job["static_configs"][0]["targets"] == ["api:8000"]
    token_file = api_job["authorization"]["credentials_file"]
    assert token_file in {c["target"] for c in services["prometheus"]["configs"]}
    assert "PGSCHED_API_TOKEN" in compose["configs"]["pgsched_api_token"]["content"]
