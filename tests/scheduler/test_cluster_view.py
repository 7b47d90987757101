"""``pgsched.cluster`` describes every registered process the same way, whatever its role."""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

import psycopg

from pgsched import Settings
from pgsched.scheduler import Scheduler
from tests.support.waiting import await_until


async def test_a_scheduler_row_shows_the_installed_version(dsn: str, conn: psycopg.Connection[Any]) -> None:
    scheduler = Scheduler(Settings(dsn=dsn, heartbeat_seconds=0.5, election_interval_seconds=0.2))
    running = asyncio.create_task(scheduler.run())

    async def registered() -> bool:
        return conn.execute("SELECT 1 FROM pgsched.cluster WHERE role = 'scheduler'").fetchone() is not None

    try:
        await await_until(registered, timeout=15)
        row = conn.execute("SELECT version FROM pgsched.cluster WHERE role = 'scheduler'").fetchone()
        assert row is not None and row["version"] == importlib.metadata.version("pgsched")
    finally:
        scheduler.stop()
        await asyncio.wait_for(running, 15)


async def test_a_leader_asked_to_stop_stops_without_waiting_out_its_interval(dsn: str) -> None:
    # Between rounds the leader waits on its connection for up to an interval (30 s here): a stop must cut that short.
    scheduler = Scheduler(Settings(dsn=dsn, heartbeat_seconds=0.5, election_interval_seconds=30))
    running = asyncio.create_task(scheduler.run())
    try:

        async def waiting() -> bool:  # a round finished: the leader is in its wait until the next one
            return scheduler.rounds >= 1

        await await_until(waiting, timeout=15)
    finally:
        scheduler.stop()
        await asyncio.wait_for(running, 5)
