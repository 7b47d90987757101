"""Worker test kit: an in-process Worker on the test database, and real `pgsched worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgsched import Settings
from pgsched.client import Client
from pgsched.worker import Worker, WorkerConfig
from tests.support.waiting import await_until
from tests.worker.tasks_app import app as tasks_app

ROOT = Path(__file__).resolve().parents[2]
APP_REF = "tests.worker.tasks_app:app"

StartWorker = Callable[..., Any]


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[StartWorker]:
    """Start in-process workers: ``await start_worker(concurrency=2, ...)``; all stopped at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(settings_override: Settings | None = None, **config: Any) -> Worker:
        worker = Worker(tasks_app.tasks, settings_override or settings, WorkerConfig(**config))
        task = asyncio.create_task(worker.run())
        running.append((worker, task))
        await await_until(lambda: _listening(worker, task), timeout=15, message="worker did not start")
        return worker

    yield start
    for worker, _ in running:
        worker.stop()
        worker.stop()
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def _listening(worker: Worker, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # raise the start-up error
    return worker.worker_id is not None and worker.listener_pid is not None


@pytest.fixture
def spawn_worker(dsn: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `pgsched worker` processes; each is killed at teardown if still alive."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        *args: str, env: dict[str, str] | None = None, user: str | None = None, python: str = sys.executable
    ) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            "PGSCHED_DSN": dsn,
            "PGSCHED_LEASE_SECONDS": "3",
            "PGSCHED_HEARTBEAT_SECONDS": "0.5",
            "PGSCHED_POLL_SECONDS": "0.5",
            **(env or {}),
        }
        argv = [python, "-m", "pgsched", "--log-level", "WARNING", "worker", "--app", APP_REF, "--no-scheduler"]
        proc = subprocess.Popen([*argv, *args], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, user=user)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


async def until(predicate: Callable[[], Any], *, timeout: float = 10.0, message: str = "") -> Any:
    """``wait_until`` for async tests: polls a quick sync predicate without blocking the event loop."""

    async def check() -> Any:
        return predicate()

    return await await_until(check, timeout=timeout, interval=0.02, message=message)


def enqueue(settings: Settings, task: str, *, max_attempts: int, **args: Any) -> int:
    """Enqueue one job through the Python client (the task's own defaults are not looked up: give max_attempts)."""
    client = Client(settings)
    try:
        return client.enqueue(task, args, max_attempts=max_attempts)
    finally:
        client.close()
