"""The firing transaction against a real PostgreSQL, time injected (no sleeping)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import db
from pgsched.clock import FixedClock
from pgsched.schedule_store import ScheduleSpec, ScheduleStore

_TXN = ('"BEGIN', '"COMMIT', '"ROLLBACK', '"SAVEPOINT', '"RELEASE')


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def store(dsn: str) -> Any:
    clock = FixedClock(utc(2026, 3, 7, 12))
    pool = db.async_pool(dsn, "test", max_size=2)
    await pool.open()
    yield ScheduleStore(pool, clock=clock), clock
    await pool.close()


async def leader_conn(dsn: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)


def jobs(conn: psycopg.Connection[dict[str, Any]], name: str) -> list[datetime]:
    rows = conn.execute("SELECT run_at FROM pgsched.jobs WHERE schedule_name = %s ORDER BY run_at", [name]).fetchall()
    return [r["run_at"] for r in rows]


async def test_dst_schedule_fires_each_documented_instant_once_as_time_moves(
    store: Any, dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    schedules, clock = store
    await schedules.schedule_upsert(ScheduleSpec.build("ny", "30 2 * * *", "t", timezone="America/New_York"))
    await schedules.schedule_upsert(ScheduleSpec.build("berlin", "15 2 * * *", "t", timezone="Europe/Berlin"))
    leader = await leader_conn(dsn)
    try:
        instant = clock.now()
        while instant < utc(2026, 3, 31):
            instant += timedelta(minutes=15)
            clock.set(instant)
            await schedules.schedule_fire_due(leader)
    finally:
        await leader.close()
    assert jobs(conn, "ny") == [utc(2026, 3, d, h, m) for d, h, m in [(8, 7, 0), (9, 6, 30), (10, 6, 30)]] + [
        utc(2026, 3, d, 6, 30) for d in range(11, 31)
    ]
    berlin = [j for j in jobs(conn, "berlin") if j >= utc(2026, 3, 28)]
    assert berlin == [utc(2026, 3, 28, 1, 15), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 15)]


async def test_two_leaders_firing_at_once_insert_one_job_per_instant(
    store: Any, dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    schedules, clock = store
    await schedules.schedule_upsert(ScheduleSpec.build("sec", "* * * * * *", "t", misfire_policy="catch_up"))
    leaders = [await leader_conn(dsn) for _ in range(4)]
    try:
        for _ in range(20):
            clock.advance(timedelta(seconds=1))
            await asyncio.gather(*(schedules.schedule_fire_due(c) for c in leaders))
        # A leader that lost its row update (crash after insert) re-fires: the run key absorbs it.
        conn.execute("UPDATE pgsched.schedules SET next_fire_at = next_fire_at - interval '10 seconds'")
        await schedules.schedule_fire_due(leaders[0])
    finally:
        for c in leaders:
            await c.close()
    fired = jobs(conn, "sec")
    assert len(fired) == len(set(fired)) == 20
    assert fired == [utc(2026, 3, 7, 12, 0, s) for s in range(1, 21)]


async def test_a_schedule_inserted_by_sql_gets_its_next_instant_and_a_bad_cron_gets_an_error(
    store: Any, dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    schedules, _ = store
    conn.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('nightly', '0 0 3 * * *', 'backup')")
    conn.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('broken', '99 * * * *', 'backup')")
    leader = await leader_conn(dsn)
    try:
        await schedules.schedule_fire_due(leader)
    finally:
        await leader.close()
    rows = {r["name"]: r for r in conn.execute("SELECT name, next_fire_at, last_error FROM pgsched.schedules")}
    assert rows["nightly"]["next_fire_at"] == utc(2026, 3, 8, 3)
    assert rows["nightly"]["last_error"] is None
    assert rows["broken"]["next_fire_at"] is None
    assert "invalid cron" in rows["broken"]["last_error"]


async def test_misfire_policies_in_the_database(store: Any, dsn: str, conn: psycopg.Connection[dict[str, Any]]) -> None:
    schedules, clock = store
    for policy in ("skip", "once", "catch_up"):
        await schedules.schedule_upsert(
            ScheduleSpec.build(policy, "* * * * *", "t", misfire_policy=policy, misfire_grace_seconds=300)
        )
    clock.advance(timedelta(minutes=10, seconds=30))  # the leader was away ten minutes
    leader = await leader_conn(dsn)
    try:
        await schedules.schedule_fire_due(leader)
    finally:
        await leader.close()
    assert jobs(conn, "skip") == []
    assert jobs(conn, "once") == [utc(2026, 3, 7, 12, 10)]
    assert jobs(conn, "catch_up") == [utc(2026, 3, 7, 12, m) for m in range(6, 11)]
    nexts = {r["name"]: r["next_fire_at"] for r in conn.execute("SELECT name, next_fire_at FROM pgsched.schedules")}
    assert set(nexts.values()) == {utc(2026, 3, 7, 12, 11)}


async def test_pause_resume_trigger_and_runs(store: Any, conn: psycopg.Connection[dict[str, Any]]) -> None:
    schedules, _ = store
    await schedules.schedule_upsert(ScheduleSpec.build("s", "0 * * * *", "t", {"x": 1}))
    paused = await schedules.schedule_set_enabled("s", False)
    assert not paused.enabled
    job = await schedules.schedule_trigger("s")
    assert (job.task, job.args, job.schedule_name) == ("t", {"x": 1}, "s")
    assert [j.id for j in await schedules.schedule_runs("s")] == [job.id]
    resumed = await schedules.schedule_set_enabled("s", True)
    assert resumed.enabled and resumed.next_fire_at == utc(2026, 3, 7, 13)


async def test_a_round_fires_every_locked_schedule_with_one_insert_and_one_advance(
    store: Any, dsn: str, conn: psycopg.Connection[dict[str, Any]], tmp_path: Any
) -> None:
    """A statement pair per schedule kept a leader to about 200 fires a second; a round now runs the same four
    statements however many schedules it locked, counted from the leader connection's protocol trace (a Bind per
    statement with parameters, a Query per one without; the transaction's own left out). Catch-up schedules fire
    several instants each, each once."""
    schedules, clock = store
    for i in range(40):
        policy = "catch_up" if i % 2 else "once"
        await schedules.schedule_upsert(ScheduleSpec.build(f"s{i}", "* * * * * *", "t", misfire_policy=policy))
    clock.set(clock.now() + timedelta(seconds=3))
    leader = await leader_conn(dsn)
    trace = tmp_path / "trace"
    try:
        await schedules.schedule_fire_due(leader)  # the first round sets each schedule's next instant
        clock.set(clock.now() + timedelta(seconds=3))
        with trace.open("w") as out:
            leader.pgconn.trace(out.fileno())
            report = await schedules.schedule_fire_due(leader)
            leader.pgconn.untrace()
    finally:
        await leader.close()
    sent = [line.split("\t", 4)[3:] for line in trace.read_text().splitlines() if "\tF\t" in line]
    statements = [m for m in sent if m[0] == "Bind" or (m[0] == "Query" and not m[1].strip().startswith(_TXN))]
    rows = conn.execute(
        "SELECT schedule_name, count(*) AS n, count(DISTINCT run_at) AS instants FROM pgsched.jobs"
        " GROUP BY schedule_name"
    ).fetchall()
    assert all(r["n"] == r["instants"] for r in rows), rows
    # each round: "once" fires the latest of the 3 instants due, "catch_up" all 3
    assert {r["schedule_name"]: r["n"] for r in rows} == {f"s{i}": 6 if i % 2 else 2 for i in range(40)}
    assert report.fired == 20 * 1 + 20 * 3
    assert len(statements) == 4, statements  # lock the due schedules, insert, advance, the next wake-up
