"""Notifier against a real server: what a stop does while the listener connection is being set up."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from pgsched.notifier import Notifier
from tests.support.waiting import await_until, wait_until

_MINE = (
    "SELECT count(*) AS n FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'pgsched:listener:%%'"
)


def _listeners(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_MINE).fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_notifier_stopped_while_it_sends_its_listens_closes_that_connection(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    # Many channels: the LISTENs take a while, and the stop lands among them, before run() owns the connection.
    notifier = Notifier(dsn, [f"channel_{i}" for i in range(5000)], lambda channel, payload: None)
    running = asyncio.create_task(notifier.run())
    await await_until(lambda: asyncio.to_thread(_listeners, conn), timeout=10, message="no listener connection")
    assert not notifier.connected.is_set()
    notifier.stop()
    await running
    wait_until(lambda: _listeners(conn) == 0, timeout=5, message="the stopped notifier's connection is still open")
