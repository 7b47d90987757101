"""The Redis L1 cache can answer run-key enqueues, but never lose or duplicate a job."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import psycopg
import redis

from pgsched import Pgsched, Settings
from pgsched.client import Client
from tests.dedupe.conftest import OwnRedis, cached_settings

KEYS = 1000


def job_count(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("SELECT count(*) AS jobs, count(DISTINCT run_key) AS keys FROM pgsched.jobs").fetchone()
    assert row is not None
    return dict(row)


def hammer(
    settings: Settings, threads: int, keys: int, during: Any = None
) -> tuple[dict[str, set[int]], list[BaseException]]:
    """``threads`` clients enqueue the same ``keys`` run keys; returns the ids each key got."""
    seen: dict[str, set[int]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + (1 if during else 0))

    def client_loop(offset: int) -> None:
        client = Client(settings)
        try:
            barrier.wait()
            for i in range(keys):
                key = f"k{(i + offset * 37) % keys}"
                job_id = client.enqueue("t", {"n": i}, run_key=key)
                with lock:
                    seen.setdefault(key, set()).add(job_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    workers = [threading.Thread(target=client_loop, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    if during:
        barrier.wait()
        during()
    for w in workers:
        w.join(300)
    return seen, errors


def test_fifty_concurrent_enqueuers_of_a_thousand_keys_make_one_job_per_key(
    settings: Settings, conn: psycopg.Connection[Any], shared_redis_url: str
) -> None:
    seen, errors = hammer(cached_settings(settings, shared_redis_url), threads=50, keys=KEYS)
    assert errors == []
    assert len(seen) == KEYS
    assert all(len(ids) == 1 for ids in seen.values()), "two callers got different ids for one key"
    assert job_count(conn) == {"jobs": KEYS, "keys": KEYS}


def test_a_cache_hit_answers_without_touching_the_database(settings: Settings, shared_redis_url: str) -> None:
    cached = cached_settings(settings, shared_redis_url)
    first = Client(cached)
    job_id = first.enqueue("t", run_key="known")
    first.close()
    second = Client(cached)
    try:
        assert second.enqueue("t", run_key="known") == job_id
        assert second._pool is None, "a hit must not open a database connection"
    finally:
        second.close()


def test_redis_stopped_mid_run_loses_nothing_and_raises_nothing(
    settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    def stop_soon() -> None:
        time.sleep(0.3)  # let enqueues hit the cache first
        own_redis.kill()

    seen, errors = hammer(
        cached_settings(settings, own_redis.url, timeout=0.05), threads=10, keys=300, during=stop_soon
    )
    assert errors == []
    assert all(len(ids) == 1 for ids in seen.values())
    assert job_count(conn) == {"jobs": 300, "keys": 300}


def test_flushall_mid_run_still_gives_one_job_per_key(
    settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    def flush_twice() -> None:
        r = redis.Redis(port=own_redis.port)
        for _ in range(2):
            time.sleep(0.2)  # flush while enqueues are running
            r.flushall()

    seen, errors = hammer(
        cached_settings(settings, own_redis.url, timeout=0.05), threads=10, keys=300, during=flush_twice
    )
    assert errors == []
    assert all(len(ids) == 1 for ids in seen.values())
    assert job_count(conn) == {"jobs": 300, "keys": 300}


def test_a_rolled_back_enqueue_leaves_no_cache_entry_so_the_next_one_creates_the_job(
    settings: Settings, dsn: str, conn: psycopg.Connection[Any], shared_redis_url: str
) -> None:
    app = Pgsched(settings=cached_settings(settings, shared_redis_url))
    try:
        with psycopg.connect(dsn) as caller:
            rolled_back = app.enqueue("t", run_key="tx-key", conn=caller)
            caller.rollback()
        created = app.enqueue("t", run_key="tx-key")
        assert created != rolled_back
        assert app.get_job(created) is not None
        assert job_count(conn) == {"jobs": 1, "keys": 1}
    finally:
        app.close()


def test_a_paused_redis_never_blocks_enqueues(
    settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    client = Client(cached_settings(settings, own_redis.url, timeout=0.05))
    try:
        client.enqueue("t", run_key="warm")  # connect while Redis answers
        own_redis.pause()
        started = time.monotonic()
        ids = [client.enqueue("t", run_key=f"p{i}") for i in range(100)]
        elapsed = time.monotonic() - started
        assert len(set(ids)) == 100
        assert client.dedupe_status()["state"] == "error"
        print(f"\n100 keyed enqueues with Redis paused: {elapsed * 1000:.0f} ms in all")
    finally:
        own_redis.resume()
        client.close()
    assert job_count(conn) == {"jobs": 101, "keys": 101}


async def test_async_enqueues_use_the_cache_too(
    settings: Settings, conn: psycopg.Connection[Any], shared_redis_url: str
) -> None:
    client = Client(cached_settings(settings, shared_redis_url))
    try:
        ids = await asyncio.gather(*(client.enqueue_async("t", run_key=f"a{i % 20}") for i in range(200)))
        by_key: dict[int, set[int]] = {}
        for i, job_id in enumerate(ids):
            by_key.setdefault(i % 20, set()).add(job_id)
        assert all(len(v) == 1 for v in by_key.values())
    finally:
        await client.aclose()
    assert job_count(conn) == {"jobs": 20, "keys": 20}


def test_latency_with_and_without_a_cache_hit(settings: Settings, shared_redis_url: str) -> None:
    """Reported, not asserted: a hit skips PostgreSQL entirely."""
    plain, cached = Client(settings), Client(cached_settings(settings, shared_redis_url))
    try:
        for client in (plain, cached):
            client.enqueue("t", run_key="lat")
        timings = {}
        for name, client in (("postgres (existing key)", plain), ("redis hit", cached)):
            samples = []
            for _ in range(2000):
                t0 = time.perf_counter()
                client.enqueue("t", run_key="lat")
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            timings[name] = (statistics.median(samples), samples[int(len(samples) * 0.95)])
        print("\n" + "; ".join(f"{k}: p50 {v[0]:.3f} ms, p95 {v[1]:.3f} ms" for k, v in timings.items()))
    finally:
        plain.close()
        cached.close()


def test_rest_enqueues_use_the_cache_and_a_stale_entry_never_answers(
    settings: Settings, conn: psycopg.Connection[Any], own_redis: OwnRedis
) -> None:
    from tests.api.conftest import ADMIN_TOKEN, serve_api

    cached = cached_settings(settings, own_redis.url).with_(api_token=ADMIN_TOKEN)
    with serve_api(cached) as api, api.client() as http:
        first = http.post("/jobs", json={"task": "t", "run_key": "rest-key"})
        again = http.post("/jobs", json={"task": "t", "run_key": "rest-key"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        # A key left in Redis for a job deleted behind pgsched's back must not hide a new job.
        redis.Redis(port=own_redis.port).set(f"{cached.redis_namespace}:runkey:ghost", 999_999)
        ghost = http.post("/jobs", json={"task": "t", "run_key": "ghost"})
        assert ghost.status_code == 201
        assert ghost.json()["id"] != 999_999
        health = http.get("/health").json()
        assert health["dedupe_cache"]["state"] == "ok"
    assert job_count(conn) == {"jobs": 2, "keys": 2}
