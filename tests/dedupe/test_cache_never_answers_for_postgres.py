"""Every enqueue surface answers a run key from PostgreSQL: a Redis entry is only a hint, checked by
primary key, scoped to one database, and a dead or hung Redis costs a few timeouts, never a job."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from pgsched import Settings
from pgsched.client import Client
from pgsched.dedupe import CircuitBreaker
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.dedupe.conftest import Blackhole, OwnRedis, cached_settings
from tests.support.waiting import wait_until

SURFACES = ["python", "python-many", "python-many-async", "rest", "rest-batch"]
Enqueue = Callable[[str], int]


async def _many_async(settings: Settings, key: str) -> int:
    client = Client(settings)
    try:
        (job_id,) = await client.enqueue_many_async([{"task": "t", "run_key": key}])
        return job_id
    finally:
        await client.aclose()


@contextlib.contextmanager
def enqueuer(surface: str, settings: Settings) -> Iterator[Enqueue]:
    """``enqueue(run_key) -> id`` through one surface of pgsched."""
    if surface.startswith("rest"):
        with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
            yield lambda key: _rest(http, surface, key)
        return
    client = Client(settings)
    try:
        if surface == "python":
            yield lambda key: client.enqueue("t", run_key=key)
        elif surface == "python-many":
            yield lambda key: client.enqueue_many([{"task": "t", "run_key": key}])[0]
        else:
            yield lambda key: asyncio.run(_many_async(settings, key))
    finally:
        client.close()


def _rest(http: httpx.Client, surface: str, key: str) -> int:
    if surface == "rest":
        response = http.post("/jobs", json={"task": "t", "run_key": key})
        assert response.status_code in (200, 201), response.text
        return int(response.json()["id"])
    response = http.post("/jobs/batch", json={"jobs": [{"task": "t", "run_key": key}]})
    assert response.status_code == 201, response.text
    return int(response.json()["ids"][0])


def holder(conn: psycopg.Connection[Any], key: str) -> list[int]:
    return [r["id"] for r in conn.execute("SELECT id FROM pgsched.jobs WHERE run_key = %s", [key]).fetchall()]


def plant(url: str, settings: Settings, conn: psycopg.Connection[Any], key: str, job_id: int) -> None:
    """Point ``key`` at ``job_id`` in Redis, under the scoped key and the old unscoped one."""
    row = conn.execute(
        "SELECT system_identifier::text || ':' || current_database() AS scope FROM pg_control_system()"
    ).fetchone()
    assert row is not None
    r = redis.Redis.from_url(url)
    r.set(f"{settings.redis_namespace}:{row['scope']}:runkey:{key}", job_id)
    r.set(f"{settings.redis_namespace}:runkey:{key}", job_id)


@pytest.mark.parametrize("deleted_by", ["sql", "api"])
@pytest.mark.parametrize("surface", SURFACES)
def test_a_deleted_job_is_enqueued_again_on_every_surface_and_an_api_delete_drops_its_key(
    surface: str, deleted_by: str, settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    cached = cached_settings(settings, own_redis.url).with_(api_token=ADMIN_TOKEN)
    with enqueuer(surface, cached) as enqueue, serve_api(cached) as api, api.client() as http:
        first = enqueue("k")
        assert enqueue("k") == first
        if deleted_by == "sql":
            conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [first])
        else:
            conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [first])
            assert http.delete(f"/jobs/{first}").status_code == 204
            assert redis.Redis(port=own_redis.port).keys(f"{cached.redis_namespace}:*k") == []
        second = enqueue("k")
    assert second != first
    assert holder(conn, "k") == [second]


@pytest.mark.parametrize("surface", SURFACES)
def test_another_jobs_id_planted_in_redis_is_never_returned(
    surface: str, settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    cached = cached_settings(settings, own_redis.url)
    with enqueuer(surface, cached) as enqueue:
        other = enqueue("a")
        plant(own_redis.url, cached, conn, "b", other)
        mine = enqueue("b")
        assert enqueue("b") == mine
    assert mine != other
    assert holder(conn, "b") == [mine]


@pytest.mark.parametrize("surface", SURFACES)
def test_two_databases_sharing_one_redis_and_namespace_never_see_each_others_ids(
    surface: str, settings: Settings, second_dsn: str, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    first = settings.with_(redis_url=own_redis.url)  # the default namespace, as a user would leave it
    second = first.with_(dsn=second_dsn)
    with enqueuer(surface, first) as enqueue:
        for n in range(3):
            enqueue(f"filler-{n}")  # the two databases' ids differ, as they would in real life
        in_first = enqueue("k")
    with enqueuer(surface, second) as enqueue:
        in_second = enqueue("k")
        assert enqueue("k") == in_second
    with psycopg.connect(second_dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as other:
        assert holder(other, "k") == [in_second]
    assert holder(conn, "k") == [in_first]


def test_a_batch_of_known_keys_is_answered_from_the_cache_after_one_primary_key_read(
    settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    items = [{"task": "t", "run_key": f"known-{n}"} for n in range(3)]
    client = Client(cached_settings(settings, own_redis.url))
    try:
        ids = client.enqueue_many(items)
        sequence = conn.execute("SELECT last_value FROM pgsched.jobs_id_seq").fetchone()
        assert client.enqueue_many(items) == ids
        # A hit reserves no id and inserts nothing: the sequence did not move.
        assert conn.execute("SELECT last_value FROM pgsched.jobs_id_seq").fetchone() == sequence
        assert client.enqueue_many([*items, {"task": "t", "run_key": "new"}])[:3] == ids
    finally:
        client.close()
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 4}


def test_a_blackholed_redis_costs_a_few_short_timeouts_and_loses_no_enqueue(
    settings: Settings, conn: psycopg.Connection[Any], blackhole: Blackhole
) -> None:
    assert Settings().redis_timeout_seconds <= 0.02, "the default Redis timeout must keep a hung Redis cheap"
    client = Client(settings.with_(redis_url=blackhole.url))
    started = time.monotonic()
    try:
        ids = [client.enqueue_many([{"task": "t", "run_key": f"b{n}-{i}"} for i in range(2)]) for n in range(50)]
        single = [client.enqueue("t", run_key=f"s{n}") for n in range(50)]
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert len({i for pair in ids for i in pair} | set(single)) == 150
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 150}
    # Three failures open the breaker; then one probe per 5 s cooldown at most.
    assert 1 <= blackhole.requests <= 3 + int(elapsed / 5.0) + 1


def test_a_half_open_breaker_lets_exactly_one_probe_through() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=0.05)
    breaker.failure(TimeoutError("blackholed"))
    assert not breaker.allow()
    wait_until(lambda: breaker.state == "half-open", timeout=5)
    assert [breaker.allow() for _ in range(10)].count(True) == 1
    breaker.success()
    assert breaker.allow()
