"""Scheduler test kit: real `pgsched scheduler` processes on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.worker.conftest import spawn_worker  # noqa: F401 - the real-worker fixture, shared

ROOT = Path(__file__).resolve().parents[2]

FAST_ENV = {
    "PGSCHED_LEASE_SECONDS": "3",
    "PGSCHED_HEARTBEAT_SECONDS": "0.5",
    "PGSCHED_POLL_SECONDS": "0.5",
    "PGSCHED_ELECTION_INTERVAL_SECONDS": "0.2",
    "PGSCHED_LEADER_IDLE_TIMEOUT_SECONDS": "2",
    "PGSCHED_REAPER_INTERVAL_SECONDS": "0.5",
}


@pytest.fixture
def spawn_scheduler(dsn: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `pgsched scheduler` processes; any still alive (or stopped) are killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PGSCHED_DSN": dsn, **FAST_ENV, **(env or {})}
        argv = [sys.executable, "-m", "pgsched", "--log-level", "WARNING", "scheduler"]
        proc = subprocess.Popen(argv, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


def leader_pid(conn: psycopg.Connection[Any]) -> int | None:
    """OS pid of the process whose row is marked leader, if its lock is really held."""
    row = conn.execute(
        """SELECT w.pid FROM pgsched.workers w
            WHERE w.is_leader
              AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                             AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                             AND l.classid = pgsched.lock_namespace()::oid AND l.objid = 0 AND l.objsubid = 2)"""
    ).fetchone()
    if row is None:
        return None
    return int(row["pid"] if isinstance(row, dict) else row[0])


def lock_backend(conn: psycopg.Connection[Any]) -> int | None:
    """Backend pid holding this database's leader lock (pg_locks spans the cluster)."""
    row = conn.execute(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
              AND database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
              AND classid = pgsched.lock_namespace()::oid AND objid = 0 AND objsubid = 2"""
    ).fetchone()
    if row is None:
        return None
    return int(row["pid"] if isinstance(row, dict) else row[0])
