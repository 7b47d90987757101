"""The leader's vacuum of the live partitions (pgsched.live_vacuum), on a real server: it vacuums past the dead-tuple
bound only, steps over a table another vacuum holds, leaves a table it may not vacuum to autovacuum with one warning,
and the leader runs it in the background while it leads.

The shared test server runs with autovacuum off, so dead tuples stay until someone vacuums: what these tests see."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgsched import Settings
from pgsched.errors import ConfigurationError
from pgsched.live_vacuum import MIN_DEAD, LiveVacuum
from pgsched.scheduler import Scheduler
from tests.support.factories import insert_jobs
from tests.support.pgbouncer import PGBOUNCER, pgbouncer_in_front_of
from tests.support.waiting import await_until


def stats(conn: psycopg.Connection[Any], table: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT n_dead_tup AS dead, vacuum_count AS vacuums FROM pg_stat_all_tables WHERE relid = %s::regclass",
        [f"pgsched.{table}"],
    ).fetchone()
    assert row is not None
    return {"dead": int(row["dead"]), "vacuums": int(row["vacuums"])}


def leave_dead(conn: psycopg.Connection[Any], n: int) -> None:
    """n dead tuples in jobs_queued (jobs enqueued, then deleted), counted in the statistics at once."""
    ids = insert_jobs(conn, n)
    conn.execute("DELETE FROM pgsched.jobs WHERE id = ANY(%s)", [ids])
    conn.execute("SELECT pg_stat_force_next_flush()")  # this transaction's end sends the counts


async def test_a_partition_past_the_bound_is_vacuumed_and_one_below_it_is_not(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    leave_dead(conn, MIN_DEAD // 2)
    vacuum = LiveVacuum(Settings(dsn=dsn))
    try:
        assert await vacuum.round() == []
        assert stats(conn, "jobs_queued")["vacuums"] == 0
        leave_dead(conn, MIN_DEAD)
        before = stats(conn, "jobs_queued")
        assert before["dead"] >= MIN_DEAD
        assert await vacuum.round() == ["jobs_queued"]
        after = stats(conn, "jobs_queued")
        assert after["vacuums"] == 1
        assert after["dead"] == 0
        assert stats(conn, "jobs_running")["vacuums"] == 0  # nothing dead there
        assert await vacuum.round() == []  # nothing left to do
    finally:
        await vacuum.close()


async def test_a_table_another_vacuum_holds_is_stepped_over_at_once(dsn: str, conn: psycopg.Connection[Any]) -> None:
    leave_dead(conn, MIN_DEAD * 2)
    with psycopg.connect(dsn) as holder:  # a transaction: holds the lock a vacuum takes until it ends
        holder.execute("LOCK TABLE pgsched.jobs_queued IN SHARE UPDATE EXCLUSIVE MODE")
        vacuum = LiveVacuum(Settings(dsn=dsn))
        try:
            # VACUUM (SKIP_LOCKED) does not wait for the lock: the round ends while the lock is still held.
            await asyncio.wait_for(vacuum.round(), 30)
            assert stats(conn, "jobs_queued")["vacuums"] == 0
        finally:
            await vacuum.close()
        holder.rollback()


@pytest.fixture
def other_role(dsn: str, conn: psycopg.Connection[Any]) -> Any:
    """A login role that may read and write pgsched's tables but owns none of them."""
    name = f"pgsched_t_role_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN")
    conn.execute(f"GRANT USAGE ON SCHEMA pgsched TO {name}")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA pgsched TO {name}")
    try:
        yield make_conninfo(dsn, user=name)
    finally:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


async def test_a_role_that_may_not_vacuum_is_told_once_and_nothing_fails(
    dsn: str, conn: psycopg.Connection[Any], other_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pgsched.live_vacuum")
    leave_dead(conn, MIN_DEAD * 2)
    vacuum = LiveVacuum(Settings(dsn=other_role))
    try:
        assert await vacuum.round() == []
        assert await vacuum.round() == []
    finally:
        await vacuum.close()
    assert stats(conn, "jobs_queued")["vacuums"] == 0
    refused = [r for r in caplog.records if getattr(r, "event", None) == "live_vacuum_refused"]
    assert [r.table for r in refused] == ["pgsched.jobs_queued"]  # type: ignore[attr-defined]


async def test_the_leader_vacuums_the_live_partitions_while_it_leads(dsn: str, conn: psycopg.Connection[Any]) -> None:
    settings = Settings(dsn=dsn, election_interval_seconds=0.2, vacuum_interval_seconds=0.2)
    leave_dead(conn, MIN_DEAD * 2)
    scheduler = Scheduler(settings)
    leader = asyncio.create_task(scheduler.run())
    try:
        await await_until(lambda: _vacuumed(conn), timeout=15, message="the leader never vacuumed jobs_queued")
    finally:
        scheduler.stop()
        await asyncio.wait_for(leader, 15)
    sessions = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s",
        ["pgsched:vacuum:%"],
    ).fetchone()
    assert sessions is not None and sessions["n"] == 0  # its connection closed with the term


async def test_an_interval_of_zero_turns_it_off(dsn: str, conn: psycopg.Connection[Any]) -> None:
    vacuum = LiveVacuum(Settings(dsn=dsn, vacuum_interval_seconds=0))
    leave_dead(conn, MIN_DEAD * 2)
    vacuum.tick(0.0)
    vacuum.tick(1e9)
    await vacuum.close()
    assert stats(conn, "jobs_queued")["vacuums"] == 0


async def _vacuumed(conn: psycopg.Connection[Any]) -> bool:
    return stats(conn, "jobs_queued")["vacuums"] > 0


def test_the_interval_setting_takes_zero_for_off_and_refuses_what_is_not_a_duration() -> None:
    assert Settings.from_env({}).vacuum_interval_seconds == 2.0
    assert Settings.from_env({"PGSCHED_VACUUM_INTERVAL_SECONDS": "0"}).vacuum_interval_seconds == 0.0
    assert Settings.from_env({"PGSCHED_VACUUM_INTERVAL_SECONDS": "2.5"}).vacuum_interval_seconds == 2.5
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(ConfigurationError, match="PGSCHED_VACUUM_INTERVAL_SECONDS"):
            Settings.from_env({"PGSCHED_VACUUM_INTERVAL_SECONDS": bad})
    with pytest.raises(ConfigurationError, match="PGSCHED_PRUNE_INTERVAL_SECONDS must be positive"):
        Settings.from_env({"PGSCHED_PRUNE_INTERVAL_SECONDS": "0"})


@pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")
async def test_a_round_through_a_transaction_pooler_vacuums_too(dsn: str, conn: psycopg.Connection[Any]) -> None:
    leave_dead(conn, MIN_DEAD * 2)
    with pgbouncer_in_front_of(dsn, pool_size=2) as pooled:
        vacuum = LiveVacuum(Settings(dsn=pooled))
        try:
            assert await vacuum.round() == ["jobs_queued"]
        finally:
            await vacuum.close()
    assert stats(conn, "jobs_queued")["vacuums"] == 1


async def test_a_round_that_cannot_reach_the_database_is_logged_and_the_next_one_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pgsched.live_vacuum")
    vacuum = LiveVacuum(Settings(dsn="postgresql://postgres@127.0.0.1:1/nowhere", vacuum_interval_seconds=0.01))

    def failures() -> int:
        return len([r for r in caplog.records if getattr(r, "event", None) == "live_vacuum_failed"])

    async def failed(n: int) -> bool:
        return failures() >= n

    try:
        vacuum.tick(1.0)  # in the background: nothing raised here, nor in the leader's loop
        await await_until(lambda: failed(1), timeout=15)
        vacuum.tick(2.0)
        await await_until(lambda: failed(2), timeout=15)
    finally:
        await vacuum.close()
