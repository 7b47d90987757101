"""The bench's application: a no-op task, a probe that returns when it started (for latency), and
``cpu_work``, a pure-Python CPU-bound function that ``bin/process-bench`` registers on threads and on processes."""

from __future__ import annotations

import time

from pgsched.app import Pgsched

__all__ = ["app", "cpu_work", "noop", "stamp"]

app = Pgsched.from_env()


@app.task(queue="bench")
async def noop() -> None:
    return None


@app.task(queue="bench")
async def stamp() -> float:
    """Wall-clock time when the task started, on this machine's clock."""
    return time.time()


def cpu_work(n: int) -> int:
    """Pure-Python arithmetic that holds the GIL throughout (module level: a process child imports it)."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total
