"""Tasks the workflow tests run in real `pgsched worker` processes; each records every execution."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pgsched import Pgsched, RetryPolicy
from pgsched.context import current_job
from pgsched.errors import PermanentError

app = Pgsched.from_env()


def _record(directory: str) -> int:
    job_id = current_job().id
    with open(Path(directory) / f"{os.getpid()}.log", "a") as f:
        f.write(f"{job_id}\n")
    return job_id


@app.task
def step(directory: str, value: Any = None, results: list[Any] | None = None) -> Any:
    """Returns ``value``, or what it received from its dependencies."""
    _record(directory)
    return value if results is None else {"value": value, "received": results}


@app.task
def collect(directory: str, results: list[Any]) -> dict[str, Any]:
    """A chord callback: every result of the group."""
    _record(directory)
    return {"count": len(results), "sum": sum(results)}


@app.task(max_attempts=1, retry=RetryPolicy(base_seconds=0.05, max_seconds=0.1, jitter=0.0))
def boom(directory: str) -> None:
    _record(directory)
    raise PermanentError("boom")


@app.task(max_attempts=3)
async def slow(directory: str, marker: str, seconds: float = 1.5) -> str:
    """Writes ``marker`` once started (the tests kill or cancel it then), then sleeps."""
    _record(directory)
    Path(marker).write_text(str(os.getpid()))
    await asyncio.sleep(seconds)
    return "slept"
