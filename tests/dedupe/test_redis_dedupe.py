"""The Redis L1 cache can answer run-key batch enqueues, but never lose or duplicate a job."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import redis

from pgsched import Pgsched, Settings
from pgsched.client import Client
from tests.dedupe.conftest import OwnRedis, cached_settings

KEYS = 1000
BATCH = 5


def job_count(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("SELECT count(*) AS jobs, count(DISTINCT run_key) AS keys FROM pgsched.jobs").fetchone()
    assert row is not None
    return dict(row)


def hammer(
    settings: Settings, threads: int, keys: int, during: Any = None
) -> tuple[dict[str, set[int]], list[BaseException]]:
    """``threads`` clients enqueue the same ``keys`` run keys in batches; returns the ids each key got."""
    seen: dict[str, set[int]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + (1 if during else 0))

    def client_loop(offset: int) -> None:
        client = Client(settings)
        try:
            barrier.wait()
            for start in range(0, keys, BATCH):
                batch = [f"k{(i + offset * 37) % keys}" for i in range(start, min(start + BATCH, keys))]
                ids = client.enqueue_many([{"task": "t", "args": {"n": start}, "run_key": key} for key in batch])
                with lock:
                    for key, job_id in zip(batch, ids, strict=True):
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
        client.enqueue_many([{"task": "t", "run_key": "warm"}])  # connect while Redis answers
        own_redis.pause()
        ids = [client.enqueue_many([{"task": "t", "run_key": f"p{i}"}])[0] for i in range(100)]
        assert len(set(ids)) == 100
        assert client.dedupe_status()["state"] == "error"
    finally:
        own_redis.resume()
        client.close()
    assert job_count(conn) == {"jobs": 101, "keys": 101}


async def test_async_enqueues_use_the_cache_too(
    settings: Settings, conn: psycopg.Connection[Any], shared_redis_url: str
) -> None:
    client = Client(cached_settings(settings, shared_redis_url))
    try:
        batches = [[{"task": "t", "run_key": f"a{i % 20}"}] for i in range(200)]
        ids = [i for batch in await asyncio.gather(*(client.enqueue_many_async(b) for b in batches)) for i in batch]
        by_key: dict[int, set[int]] = {}
        for i, job_id in enumerate(ids):
            by_key.setdefault(i % 20, set()).add(job_id)
        assert all(len(v) == 1 for v in by_key.values())
    finally:
        await client.aclose()
    assert job_count(conn) == {"jobs": 20, "keys": 20}
