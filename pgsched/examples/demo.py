"""The demo app `pgsched dev` runs: a few tasks that show success, results, retries and delays.

Its cron schedule ("demo-tick", every 30 seconds) is created by `pgsched dev` at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import random

from pgsched import Pgsched

__all__ = ["add", "app", "flaky", "hello", "sleep", "tick"]

log = logging.getLogger(__name__)

app = Pgsched.from_env()


@app.task
def hello(name: str = "world") -> str:
    """Say hello; the greeting is stored as the job's result."""
    return f"hello, {name}"


@app.task
def add(a: float, b: float) -> float:
    return a + b


@app.task(max_attempts=4)
def flaky(failure_rate: float = 0.5) -> str:
    """Fails at random, so retries and the dead-letter queue have something to show."""
    if random.random() < failure_rate:
        raise RuntimeError("the flaky task failed, as it sometimes does")
    return "made it"


@app.task(timeout=120)
async def sleep(seconds: float = 5.0) -> float:
    """Takes a while: watch it in the running view, or cancel it."""
    await asyncio.sleep(seconds)
    return seconds


@app.task
def tick() -> str:
    """Fired by the demo cron schedule."""
    log.info("tick", extra={"event": "demo_tick"})
    return "tick"
