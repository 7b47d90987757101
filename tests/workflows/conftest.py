"""Workflow test kit: real `pgsched worker` processes running tests/workflows/flow_app.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_REF = "tests.workflows.flow_app:app"

SpawnWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(dsn: str) -> Iterator[SpawnWorker]:
    """``spawn_worker("--concurrency", "4", leader=True)``; every process is killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str, leader: bool = False) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            "PGSCHED_DSN": dsn,
            "PGSCHED_LEASE_SECONDS": "3",
            "PGSCHED_HEARTBEAT_SECONDS": "0.5",
            "PGSCHED_POLL_SECONDS": "0.5",
        }
        argv = [sys.executable, "-m", "pgsched", "--log-level", "WARNING", "worker", "--app", APP_REF]
        if not leader:
            argv.append("--no-scheduler")
        proc = subprocess.Popen([*argv, *args], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def executions(directory: Path) -> dict[int, int]:
    """How many times each job id ran, over every worker process's log."""
    counts: dict[int, int] = {}
    for log in directory.glob("*.log"):
        for line in log.read_text().split():
            counts[int(line)] = counts.get(int(line), 0) + 1
    return counts
