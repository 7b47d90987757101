"""Tasks the worker tests run, in process and in real `pgsched worker` subprocesses."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psycopg

from pgsched import Pgsched, RetryPolicy, Snooze
from pgsched.context import current_job

app = Pgsched.from_env()

FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2, jitter=0.0)


@app.task
async def noop() -> None:
    return None


@app.task
def record(directory: str) -> int:
    """Append "<job id>" to this process's own file: the tests count executions per job."""
    with open(Path(directory) / f"{os.getpid()}.log", "a") as f:
        f.write(f"{current_job().id}\n")
    return os.getpid()


@app.task
async def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@app.task(max_attempts=3, retry=FAST_RETRY)
def fail_always(message: str = "boom") -> None:
    raise RuntimeError(message)


@app.task(retry=FAST_RETRY)
async def sleepy(seconds: float = 30.0) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task
async def wait_for_cancel(marker: str) -> None:
    try:
        await asyncio.Event().wait()  # runs until cancelled
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise


@app.task
def sync_sleep(seconds: float = 0.2) -> float:
    time.sleep(seconds)
    return seconds


@app.task
async def gated(gate: str, value: Any = None) -> Any:
    """Return ``value`` once the file ``gate`` exists: the test decides when the job ends."""
    while not Path(gate).exists():
        await asyncio.sleep(0.02)
    return value


@app.task
async def not_json() -> Any:
    return {"when": object()}


@app.task(transactional=True, max_attempts=1)
async def tx_insert(conn: psycopg.AsyncConnection[Any], value: str, fail: bool = False) -> str:
    await conn.execute("INSERT INTO tx_effects (value) VALUES (%s)", [value])
    if fail:
        raise RuntimeError("rolled back on purpose")
    return value


@app.task(transactional=True, max_attempts=1)
async def tx_wait(conn: psycopg.AsyncConnection[Any], value: str, gate: str) -> str:
    await conn.execute("INSERT INTO tx_effects (value) VALUES (%s)", [value])
    while not Path(gate).exists():
        await asyncio.sleep(0.02)
    return value


@app.task(retry=FAST_RETRY)
async def fail_first(failures: int = 1) -> int:
    """Fail the first ``failures`` attempts, then succeed."""
    attempt = current_job().attempt
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@app.task
async def snooze_once(marker: str) -> None:
    """Snooze the first run (the attempt is given back), succeed the next."""
    if not Path(marker).exists():
        Path(marker).write_text("snoozed")
        raise Snooze(0.05)
