"""A leader whose lock session died (a database restart, a terminated backend) ends its round as a lost fence does:
the next use of its connection raises LeadershipLost, which the campaign turns into a step-down and a new campaign.
It raised RuntimeError before: a scheduler whose prune check found the lock gone (through a short PostgreSQL crash)
then waited on the connection it no longer had, and the whole process exited."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgsched.leader import LeaderElector, LeadershipLost


async def test_the_connection_of_a_leader_that_lost_its_lock_session_raises_leadership_lost(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    elector = LeaderElector(dsn)
    try:
        assert await elector.try_acquire()
        assert elector.conn is not None
        conn.execute("SELECT pg_terminate_backend(%s)", [elector.backend_pid])
        assert not await elector.confirm()  # the check fails on the dead session and steps down
        assert not elector.is_leader
        with pytest.raises(LeadershipLost):
            _ = elector.conn
        assert await elector.try_acquire()  # the next campaign takes the lock again on a new session
    finally:
        await elector.resign(None)
