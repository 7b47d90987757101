"""The example FastAPI app against a real PostgreSQL: transactional enqueue, the API mounted under a prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from pgsched import Settings
from pgsched.testing import drain_async
from tests.frameworks.fastapi_app import create_web_app, jobs

Conn = psycopg.Connection[dict[str, Any]]
TOKEN = "example-admin-token"


@pytest.fixture
def web_settings(settings: Settings, conn: Conn) -> Settings:
    conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
    return settings.with_(api_token=TOKEN)


@pytest.fixture
async def client(web_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    web = create_web_app(web_settings)
    async with web.router.lifespan_context(web):  # as a server would: the app's lifespan and the API's
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as test_client:
            yield test_client


def _count(conn: Conn, table: str) -> int:
    query = "SELECT count(*) AS n FROM orders" if table == "orders" else "SELECT count(*) AS n FROM pgsched.jobs"
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row["n"])


async def test_an_order_and_its_job_commit_together_and_the_job_runs(
    client: httpx.AsyncClient, web_settings: Settings, conn: Conn
) -> None:
    response = await client.post("/orders", json={"item": "tea"})
    assert response.status_code == 201
    body = response.json()
    app = jobs.with_settings(web_settings)
    try:
        (outcome,) = await drain_async(app)
    finally:
        await app.aclose()
    assert (outcome.id, outcome.result) == (body["job"], f"order {body['order']} shipped")


async def test_a_request_that_fails_after_enqueueing_leaves_neither_order_nor_job(
    client: httpx.AsyncClient, conn: Conn
) -> None:
    response = await client.post("/orders", json={"item": "tea", "reject": True})
    assert response.status_code == 409
    assert (_count(conn, "orders"), _count(conn, "jobs")) == (0, 0)


async def test_the_mounted_api_serves_jobs_openapi_and_a_dashboard_with_links_under_the_prefix(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await client.post("/orders", json={"item": "cake"})).json()["job"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job = await client.get(f"/pgsched/jobs/{job_id}", headers=auth)
    assert (job.status_code, job.json()["task"]) == (200, "ship_order")
    assert (await client.get(f"/pgsched/jobs/{job_id}")).status_code == 401  # the API's own auth holds when mounted
    assert (await client.get("/pgsched/openapi.json")).status_code == 401  # needs a token unless made public
    document = (await client.get("/pgsched/openapi.json", headers=auth)).json()
    assert document["servers"] == [{"url": "/pgsched"}]
    redirect = await client.get("/pgsched", follow_redirects=False)
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/pgsched/")
    page = await client.get("/pgsched/")
    assert page.status_code == 200
    assert 'src="dashboard/dashboard.js"' in page.text and 'href="/' not in page.text  # relative to the prefix
    script = await client.get("/pgsched/dashboard/dashboard.js")
    assert script.status_code == 200 and "fetch(API_ROOT + path" in script.text
