"""The bench's application: a no-op task and a probe that returns when it started (for latency)."""

from __future__ import annotations

import time

from pgsched.app import Pgsched

__all__ = ["app", "noop", "stamp"]

app = Pgsched.from_env()


@app.task(queue="bench")
async def noop() -> None:
    return None


@app.task(queue="bench")
async def stamp() -> float:
    """Wall-clock time when the task started, on this machine's clock."""
    return time.time()
