"""Through a real PgBouncer in transaction mode: enqueue (Python, sync and async), the REST API and the
CLI work, concurrently, past psycopg's prepare threshold (server-side prepared statements would break)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from pgsched import Pgsched, Settings
from pgsched.migrate import Migrator, available_migrations
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.pgbouncer import PGBOUNCER, pgbouncer_in_front_of

pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")


@pytest.fixture
def pooled_dsn(dsn: str) -> Iterator[str]:
    with pgbouncer_in_front_of(dsn, pool_size=3) as pooled:
        yield pooled


def _count(conn: psycopg.Connection[Any], queue: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE queue = %s", [queue]).fetchone()
    assert row is not None
    return int(row["n"])


def test_python_enqueue_through_a_transaction_pooler(pooled_dsn: str, conn: psycopg.Connection[Any]) -> None:
    app = Pgsched(settings=Settings(dsn=pooled_dsn))
    try:

        def enqueue_twenty(client: int) -> None:
            for k in range(20):  # past psycopg's prepare threshold (5) on every pooled connection
                app.enqueue("noop", {"k": k}, queue="pooled", run_key=f"pooled-{client}-{k}")
                app.enqueue("noop", {"k": k}, queue="pooled", run_key=f"pooled-{client}-{k}")  # the existing one

        with ThreadPoolExecutor(6) as pool:
            for done in [pool.submit(enqueue_twenty, c) for c in range(6)]:
                done.result()
        app.enqueue_many([{"task": "noop", "queue": "pooled"} for _ in range(50)])
    finally:
        app.close()
    assert _count(conn, "pooled") == 6 * 20 + 50


async def test_async_enqueue_through_a_transaction_pooler(pooled_dsn: str, conn: psycopg.Connection[Any]) -> None:
    app = Pgsched(settings=Settings(dsn=pooled_dsn))
    try:
        for _ in range(4):
            await asyncio.gather(*[app.enqueue_async("noop", queue="pooled_async") for _ in range(25)])
    finally:
        await app.aclose()
    assert _count(conn, "pooled_async") == 100


def test_rest_api_and_cli_through_a_transaction_pooler(pooled_dsn: str, conn: psycopg.Connection[Any]) -> None:
    with serve_api(Settings(dsn=pooled_dsn, api_token=ADMIN_TOKEN)) as api, api.client() as client:
        for k in range(30):
            created = client.post("/jobs", json={"task": "noop", "queue": "pooled_rest", "args": {"k": k}})
            assert created.status_code == 201, created.text
            assert client.get(f"/jobs/{created.json()['id']}").status_code == 200
            assert client.get("/jobs", params={"limit": 5}).status_code == 200
    env = {**os.environ, "PGSCHED_DSN": pooled_dsn}
    for _ in range(8):
        listed = subprocess.run(
            [sys.executable, "-m", "pgsched", "jobs", "list", "--json"], env=env, capture_output=True, text=True
        )
        assert listed.returncode == 0, listed.stderr
    assert _count(conn, "pooled_rest") == 30


def test_doctor_says_whether_a_pooler_sits_between_its_mode_and_what_falls_back(dsn: str, pooled_dsn: str) -> None:
    def checks(target: str, **env: str) -> dict[str, dict[str, str]]:
        out = subprocess.run(
            [sys.executable, "-m", "pgsched", "doctor", "--json"],
            env={**os.environ, "PGSCHED_DSN": target, **env},
            capture_output=True,
            text=True,
        )
        return {c["name"]: c for c in json.loads(out.stdout)}

    direct = checks(dsn)["pooler"]
    assert direct["status"] == "ok" and "prepared statements on" in direct["detail"]
    through = checks(pooled_dsn)["pooler"]
    assert through["status"] == "warn"
    for said in ("pool mode: transaction", "prepared statements are off", "no LISTEN", "lease row"):
        assert said in through["detail"]
    with_session = checks(pooled_dsn, PGSCHED_SESSION_DSN=dsn)
    assert with_session["pooler"]["status"] == "ok" and "PGSCHED_SESSION_DSN" in with_session["pooler"]["detail"]
    assert with_session["session dsn"]["status"] == "ok"
    unreachable = checks(pooled_dsn, PGSCHED_SESSION_DSN="host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert unreachable["session dsn"]["status"] == "fail"


def test_two_concurrent_migrators_through_a_transaction_pooler_both_succeed(empty_dsn: str) -> None:
    with pgbouncer_in_front_of(empty_dsn, pool_size=2) as pooled:
        with ThreadPoolExecutor(2) as pool:
            results = [f.result() for f in [pool.submit(Migrator(pooled).migrate) for _ in range(2)]]
        # One transaction per migration: the two may share the work, never apply one twice.
        assert sorted(m.version for r in results for m in r) == [m.version for m in available_migrations()]
        assert Migrator(pooled).migrate() == []
