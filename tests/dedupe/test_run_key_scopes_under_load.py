"""50 concurrent clients enqueue the same run keys under each scope, with and without the Redis cache:
exactly the right number of jobs, and (active scope, with jobs finishing meanwhile) never two live jobs
sharing a key at any instant."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgsched import Settings
from pgsched.client import Client
from pgsched.queries import query
from tests.dedupe.conftest import cached_settings

CLIENTS = 50
KEYS = 200
BATCH = 5
SCOPES: dict[str, dict[str, Any]] = {
    "retention": {},
    "active": {"run_key_scope": "active"},
    "period": {"run_key_period": 3600},
}
LIVE_DUPLICATES = """SELECT run_key, count(*) AS n FROM pgsched.jobs
 WHERE state IN ('waiting', 'queued', 'running') AND run_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1"""


def hammer(
    settings: Settings,
    options: dict[str, Any],
    stop_when_done: threading.Event,
    *,
    clients: int = CLIENTS,
    keys: int = KEYS,
) -> dict[str, set[int]]:
    """CLIENTS threads enqueue the same KEYS run keys, each from its own offset, half one by one and half in
    batches; returns the ids each key got."""
    seen: dict[str, set[int]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client_loop(offset: int) -> None:
        client = Client(settings)
        try:
            barrier.wait()
            for start in range(0, keys, BATCH):
                batch = [f"k{(i + offset * 37) % keys}" for i in range(start, start + BATCH)]
                if offset % 2:
                    ids = client.enqueue_many([{"task": "t", "run_key": k, **options} for k in batch])
                else:
                    ids = [client.enqueue("t", run_key=k, **options) for k in batch]
                with lock:
                    for key, job_id in zip(batch, ids, strict=True):
                        seen.setdefault(key, set()).add(job_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    stop_when_done.set()
    assert errors == []
    return seen


def in_background(dsn: str, stop: threading.Event, step: Callable[[psycopg.Connection[Any]], None]) -> threading.Thread:
    def loop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                step(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def finish_some(conn: psycopg.Connection[Any]) -> None:
    """A stand-in for workers: start some queued jobs, finish some running ones (the claim and finish states)."""
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'running', started_at = now() WHERE id IN ("
        " SELECT id FROM pgsched.jobs WHERE state = 'queued' LIMIT 20 FOR UPDATE SKIP LOCKED)"
    )
    conn.execute(
        "UPDATE pgsched.jobs SET state = CASE WHEN id % 5 = 0 THEN 'dead' ELSE 'succeeded' END::pgsched.job_state,"
        " finished_at = now() WHERE id IN ("
        " SELECT id FROM pgsched.jobs WHERE state = 'running' LIMIT 20 FOR UPDATE SKIP LOCKED)"
    )


def redrive_and_prune(conn: psycopg.Connection[Any]) -> None:
    """The other ways a key changes hands: the dead-letter redrive (a job coming back takes its key again, or
    stays dead while a newer job holds it) and the leader's pruner deleting stale keys."""
    conn.execute(query("dead_retry_many"), {"now": None, "queue": None, "task": None})
    conn.execute(query("run_key_prune"), {"now": None, "limit": 100})


@pytest.mark.parametrize("cache", ["postgres", "redis"])
@pytest.mark.parametrize("scope", list(SCOPES))
def test_fifty_clients_of_the_same_keys_make_exactly_one_job_per_key_and_scope(
    scope: str, cache: str, settings: Settings, conn: psycopg.Connection[Any], request: pytest.FixtureRequest
) -> None:
    if cache == "redis":
        settings = cached_settings(settings, request.getfixturevalue("shared_redis_url"))
    seen = hammer(settings, SCOPES[scope], threading.Event())
    assert len(seen) == KEYS
    assert all(len(ids) == 1 for ids in seen.values()), "two callers got different ids for one key"
    row = conn.execute("SELECT count(*) AS jobs, count(DISTINCT run_key) AS keys FROM pgsched.jobs").fetchone()
    assert row == {"jobs": KEYS, "keys": KEYS}
    holders = conn.execute("SELECT run_key, job_id FROM pgsched.run_keys").fetchall()
    assert {r["run_key"]: {r["job_id"]} for r in holders} == seen


@pytest.mark.parametrize("cache", ["postgres", "redis"])
def test_active_keys_never_have_two_live_jobs_while_jobs_finish_are_redriven_and_pruned_meanwhile(
    cache: str, settings: Settings, conn: psycopg.Connection[Any], request: pytest.FixtureRequest
) -> None:
    if cache == "redis":
        settings = cached_settings(settings, request.getfixturevalue("shared_redis_url"))
    dsn = settings.require_dsn()
    stop = threading.Event()
    violations: list[Any] = []
    samples = [0]

    def sample(c: psycopg.Connection[Any]) -> None:
        violations.extend(c.execute(LIVE_DUPLICATES).fetchall())
        samples[0] += 1

    background = [in_background(dsn, stop, step) for step in (finish_some, redrive_and_prune, sample)]
    seen = hammer(settings, SCOPES["active"], stop)
    for thread in background:
        thread.join(30)
    assert violations == []
    assert samples[0] > 0
    assert conn.execute(LIVE_DUPLICATES).fetchall() == []
    ids = {job_id for ids in seen.values() for job_id in ids}
    row = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [list(ids)]).fetchone()
    assert row == {"n": len(ids)}, "an id given to a caller is not a job"
    total = conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()
    assert total == {"n": len(ids)}, "a job was created that no caller was given"
    assert len(ids) > KEYS, "no key was freed and taken again: the finisher did not overlap the enqueuers"


PENDING_DUPLICATES = """SELECT run_key, count(*) AS n FROM pgsched.jobs
 WHERE state IN ('waiting', 'queued') AND run_key IS NOT NULL GROUP BY 1 HAVING count(*) > 1"""


def test_replacing_clients_keep_at_most_one_pending_job_per_key_while_jobs_start_and_finish(
    settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    dsn = settings.require_dsn()
    stop = threading.Event()
    violations: list[Any] = []

    def sample(c: psycopg.Connection[Any]) -> None:
        violations.extend(c.execute(PENDING_DUPLICATES).fetchall())

    background = [in_background(dsn, stop, step) for step in (finish_some, sample)]
    seen = hammer(settings, {"run_key_scope": "active", "on_conflict": "replace"}, stop, clients=20, keys=20)
    for thread in background:
        thread.join(30)
    assert violations == []
    assert conn.execute(PENDING_DUPLICATES).fetchall() == []
    ids = {job_id for ids in seen.values() for job_id in ids}
    total = conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()
    assert total == {"n": len(ids)}, "a job was created that no caller was given"
    assert len(ids) > 20, "no running holder handed its key on: the finisher did not overlap the enqueuers"
