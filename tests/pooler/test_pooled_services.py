"""Workers and leader candidates through a real PgBouncer in transaction mode (pool of 2 server sessions, so
sessions really are shared): without PGSCHED_SESSION_DSN they poll, lead through the lease row and live by
heartbeat age; with it, LISTEN and the locks go to the session DSN."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from pgsched import Settings
from pgsched.client import Client
from pgsched.leader import LeadershipLost, LeaseElector
from tests.scheduler.conftest import FAST_ENV
from tests.support.pgbouncer import PGBOUNCER, pgbouncer_in_front_of
from tests.support.waiting import await_until, wait_until

pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")

Conn = psycopg.Connection[dict[str, Any]]
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def pooled_dsn(dsn: str) -> Iterator[str]:
    with pgbouncer_in_front_of(dsn, pool_size=2) as pooled:
        yield pooled


def _leader_lock_held(conn: Conn) -> bool:
    """Whether some session holds the leader's advisory lock in this database (pg_locks spans the cluster)."""
    held = conn.execute("SELECT pgsched.lock_held(0) AS held").fetchone()
    return bool(held and held["held"])


def _enqueue(dsn: str, task: str, n: int, **args: Any) -> list[int]:
    client = Client(Settings(dsn=dsn))
    try:
        return [client.enqueue(task, args, queue="default", max_attempts=3) for _ in range(n)]
    finally:
        client.close()


def _states(conn: Conn, ids: list[int]) -> dict[str, int]:
    rows = conn.execute("SELECT state::text, count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s) GROUP BY 1", [ids])
    return {r["state"]: int(r["n"]) for r in rows}


def test_a_worker_and_two_leader_candidates_through_a_pooler_drain_jobs_and_fire_cron_once_per_instant(
    pooled_dsn: str, conn: Conn, spawn_worker: Spawn, spawn_scheduler: Spawn
) -> None:
    conn.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('tick', '* * * * * *', 'noop')")
    ids = _enqueue(pooled_dsn, "noop", 200)
    env = {**FAST_ENV, "PGSCHED_DSN": pooled_dsn}
    spawn_worker(env=env)
    spawn_scheduler(env)
    spawn_scheduler(env)
    wait_until(lambda: _states(conn, ids) == {"succeeded": 200}, timeout=40, message="jobs not drained")
    ticks = "SELECT run_key FROM pgsched.jobs WHERE schedule_name = 'tick' AND state = 'succeeded'"
    wait_until(lambda: len(conn.execute(ticks).fetchall()) >= 4, timeout=30, message="cron did not fire")

    fired = conn.execute("SELECT run_key, count(*) AS n FROM pgsched.jobs WHERE schedule_name = 'tick' GROUP BY 1")
    assert all(r["n"] == 1 for r in fired)
    workers = conn.execute("SELECT role, heartbeat_lease_seconds FROM pgsched.workers ORDER BY id").fetchall()
    assert [w["role"] for w in workers].count("scheduler") == 2
    assert all(w["heartbeat_lease_seconds"] == 3.0 for w in workers)  # no session: alive by heartbeat age
    assert conn.execute("SELECT count(*) AS n FROM pgsched.cluster WHERE alive").fetchone() == {"n": 3}
    lease = conn.execute("SELECT holder, epoch FROM pgsched.leader_lease").fetchone()
    assert lease is not None and lease["holder"] and lease["epoch"] >= 1
    assert not _leader_lock_held(conn)  # nobody took the session advisory lock through the pooler
    assert conn.execute("SELECT pgsched.leader_present() AS p").fetchone() == {"p": True}
    waiting = conn.execute("SELECT count(*) AS n FROM pgsched.waiting_workers").fetchone()
    assert waiting == {"n": 0}  # polling workers ask for no NOTIFY


async def test_two_lease_candidates_through_a_pooler_never_act_at_once(pooled_dsn: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE public.leader_acts (holder text, started timestamptz, ended timestamptz)")
    electors = [LeaseElector(pooled_dsn, ttl_seconds=0.5) for _ in range(2)]
    rolled_back = 0
    acted: set[str] = set()

    async def act(elector: LeaseElector) -> None:
        async with elector.fenced() as c:
            began = await (await c.execute("SELECT clock_timestamp() AS t")).fetchone()
            await c.execute("SELECT pg_sleep(0.02)")
            await c.execute(
                "INSERT INTO public.leader_acts VALUES (%s, %s, clock_timestamp())", [elector.holder, began["t"]]
            )
        acted.add(elector.holder)

    async def candidate(elector: LeaseElector, seed: int) -> None:
        nonlocal rolled_back
        rng = random.Random(seed)
        # At least 60 rounds; then on until both have led and a paused leader's work was fenced off (which pauses
        # make likely but not certain in 60 rounds: with fixed seeds, timing alone decided it, and 1 run in 3 failed).
        for done in range(400):
            if done >= 60 and acted == {e.holder for e in electors} and rolled_back:
                break
            if not elector.is_leader and not await elector.try_acquire():
                await asyncio.sleep(0.05)  # the election interval
                continue
            if rng.random() < 0.1:
                await _until_lease_expired(pooled_dsn)  # a pause past the lease: the other may take over meanwhile
            try:
                await act(elector)
            except LeadershipLost:
                rolled_back += 1
                await elector.step_down("lost")

    try:
        await asyncio.gather(candidate(electors[0], 1), candidate(electors[1], 2))
    finally:
        for elector in electors:
            await elector.resign()
    acts = conn.execute("SELECT holder, started, ended FROM public.leader_acts ORDER BY started").fetchall()
    assert {a["holder"] for a in acts} == {e.holder for e in electors}  # leadership changed hands
    assert rolled_back >= 1  # a paused leader's work was fenced off
    for before, after in itertools.pairwise(acts):
        assert before["ended"] <= after["started"], (before, after)


async def _expired(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the leader lease has expired by the database's clock."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT expires_at < clock_timestamp() FROM pgsched.leader_lease", prepare=False)
        row = await cur.fetchone()
    return bool(row and row[0])


async def _until_lease_expired(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await await_until(lambda: _expired(conn), timeout=10, message="the lease never expired")


async def test_a_lease_is_not_taken_while_its_leader_transaction_runs(pooled_dsn: str) -> None:
    leader, follower = LeaseElector(pooled_dsn, ttl_seconds=0.3), LeaseElector(pooled_dsn, ttl_seconds=0.3)
    try:
        assert await leader.try_acquire()
        assert not await follower.try_acquire()
        async with leader.fenced() as c:
            await await_until(lambda: _expired(c), timeout=10)  # past the lease's expiry, inside the fence
            assert not await follower.try_acquire()
        await await_until(follower.try_acquire, timeout=5, message="follower never took the expired lease")
        with pytest.raises(LeadershipLost):
            async with leader.fenced():
                pass
    finally:
        await leader.resign()
        await follower.resign()


def test_a_paused_worker_behind_a_pooler_is_not_charged_and_a_killed_one_is(
    pooled_dsn: str, conn: Conn, spawn_worker: Spawn, spawn_scheduler: Spawn
) -> None:
    env = {**FAST_ENV, "PGSCHED_DSN": pooled_dsn}
    spawn_scheduler(env)
    worker = spawn_worker(env=env)
    [paused] = _enqueue(pooled_dsn, "sleepy", 1, seconds=2.5)
    running = "SELECT worker_id FROM pgsched.jobs WHERE id = %s AND state = 'running' AND started_at IS NOT NULL"
    wait_until(lambda: conn.execute(running, [paused]).fetchone(), timeout=20, message="job did not start")
    os.kill(worker.pid, signal.SIGSTOP)  # no heartbeat past the grace (1 s, for lock holders), within the lease (3 s)
    try:
        age = "SELECT extract(epoch FROM now() - heartbeat_at) AS age FROM pgsched.workers WHERE role = 'worker'"
        wait_until(lambda: conn.execute(age).fetchone()["age"] > 2.0, timeout=10)  # type: ignore[index]
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    done = "SELECT state::text, attempt, errors FROM pgsched.jobs WHERE id = %s AND state NOT IN ('running', 'queued')"
    row = wait_until(lambda: conn.execute(done, [paused]).fetchone(), timeout=20)
    assert (row["state"], row["attempt"], row["errors"]) == ("succeeded", 1, [])

    [killed] = _enqueue(pooled_dsn, "sleepy", 1, seconds=1.0)
    published = "SELECT 1 FROM pgsched.workers WHERE %s = ANY(started)"  # so the loss is charged to the attempt
    wait_until(lambda: conn.execute(published, [killed]).fetchone(), timeout=20, message="job did not start")
    worker.kill()
    worker.wait(10)
    spawn_worker(env=env)
    row = wait_until(lambda: conn.execute(done, [killed]).fetchone(), timeout=30, message="lost job never rerun")
    assert row["state"] == "succeeded" and [e["kind"] for e in row["errors"]] == ["worker_lost"]


def test_with_a_session_dsn_listen_and_the_locks_go_to_it(
    dsn: str, pooled_dsn: str, conn: Conn, spawn_worker: Spawn, spawn_scheduler: Spawn
) -> None:
    env = {**FAST_ENV, "PGSCHED_DSN": pooled_dsn, "PGSCHED_SESSION_DSN": dsn}
    spawn_worker(env=env)
    spawn_scheduler(env)
    ids = _enqueue(pooled_dsn, "noop", 50)
    wait_until(lambda: _states(conn, ids) == {"succeeded": 50}, timeout=40, message="jobs not drained")
    wait_until(lambda: _leader_lock_held(conn), timeout=15, message="no leader holds the advisory lock")
    workers = conn.execute("SELECT heartbeat_lease_seconds FROM pgsched.workers").fetchall()
    assert workers and all(w["heartbeat_lease_seconds"] is None for w in workers)
    listening = (
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'pgsched:listener:%%'"
    )
    assert wait_until(lambda: conn.execute(listening).fetchone()["n"] >= 1, timeout=10)  # type: ignore[index]
    lease = conn.execute("SELECT holder FROM pgsched.leader_lease").fetchone()
    assert lease == {"holder": None}


def test_a_killed_lease_leader_is_replaced_within_the_lease_and_cron_goes_on(
    pooled_dsn: str, conn: Conn, spawn_scheduler: Spawn
) -> None:
    conn.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('tick', '* * * * * *', 'noop')")
    env = {**FAST_ENV, "PGSCHED_DSN": pooled_dsn}  # lease: PGSCHED_LEADER_IDLE_TIMEOUT_SECONDS = 2
    candidates = {proc.pid: proc for proc in (spawn_scheduler(env), spawn_scheduler(env))}
    holder = "SELECT split_part(holder, ':', 2)::int AS pid, epoch FROM pgsched.leader_lease WHERE holder IS NOT NULL"
    first = wait_until(lambda: conn.execute(holder).fetchone(), timeout=20, message="nobody took the lease")
    fired = "SELECT count(*) AS n FROM pgsched.jobs WHERE schedule_name = 'tick'"
    wait_until(lambda: conn.execute(fired).fetchone()["n"] >= 2, timeout=20)  # type: ignore[index]
    candidates[first["pid"]].kill()
    candidates[first["pid"]].wait(10)
    second = wait_until(
        lambda: (row := conn.execute(holder).fetchone()) and row["pid"] != first["pid"] and row,
        timeout=15,
        message="the other candidate never took the lease over",
    )
    assert second["epoch"] > first["epoch"]
    before = conn.execute(fired).fetchone()["n"]  # type: ignore[index]
    wait_until(lambda: conn.execute(fired).fetchone()["n"] >= before + 2, timeout=20)  # type: ignore[index]
    keys = conn.execute("SELECT run_key, count(*) AS n FROM pgsched.jobs WHERE schedule_name = 'tick' GROUP BY 1")
    assert all(r["n"] == 1 for r in keys)
