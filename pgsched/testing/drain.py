"""drain: run every due job of an app in-process, through a real ``Worker``, and report how each ended.

The claim, the execution and the completion are the worker's own (same statements, hooks and
middleware); this module only decides when the queues are drained and reads the outcomes. It must
not run in production: it starts and stops a worker per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import psycopg

from pgsched import db
from pgsched.app import Pgsched
from pgsched.hooks import JobEvent
from pgsched.queries import query
from pgsched.testing.outcome import Outcome
from pgsched.worker import Worker, WorkerConfig

__all__ = ["drain", "drain_async"]

_POLL = 0.01


def drain(
    app: Pgsched, *, queues: Iterable[str] | None = None, concurrency: int = 1, timeout: float = 30.0
) -> list[Outcome]:
    """Run every job due now in ``queues`` (default: the queues of the app's tasks and ``default``),
    including jobs enqueued by those jobs, until none is due; return their outcomes in start order.

    A failed job whose retry is due later is reported ``queued`` with its error. Raises ``TimeoutError``
    when due jobs remain after ``timeout`` seconds (e.g. a paused queue). From async code use ``drain_async``."""
    return asyncio.run(drain_async(app, queues=queues, concurrency=concurrency, timeout=timeout))


async def drain_async(
    app: Pgsched,
    *,
    queues: Iterable[str] | None = None,
    concurrency: int = 1,
    timeout: float = 30.0,  # noqa: ASYNC109 - mirrors drain()
) -> list[Outcome]:
    """``drain`` for async code."""
    names = tuple(sorted(set(queues) if queues is not None else {"default", *(t.queue for t in app.tasks)}))
    started: dict[int, None] = {}

    def record(event: JobEvent) -> None:
        started[event.job_id] = None

    hooks = app.tasks.hooks
    hooks.on("job_started", record)
    worker = Worker(app.tasks, app.settings, WorkerConfig(queues=names, concurrency=concurrency))
    dsn = app.settings.require_dsn()
    try:
        async with await db.session_async(dsn, "cli") as conn:
            gave_up: TimeoutError | None = None
            async with asyncio.TaskGroup() as group:
                running = group.create_task(worker.run())
                try:
                    await _wait_drained(conn, worker, running, names, timeout)
                except TimeoutError as exc:
                    gave_up = exc  # raised as itself below, not inside the group's ExceptionGroup
                finally:
                    worker.stop()
            if gave_up is not None:
                raise gave_up
            return await _outcomes(conn, list(started))
    finally:
        hooks.off("job_started", record)


async def _wait_drained(
    conn: psycopg.AsyncConnection[tuple[bool]],
    worker: Worker,
    running: asyncio.Task[None],
    queues: tuple[str, ...],
    timeout: float,  # noqa: ASYNC109 - a deadline, checked between polls
) -> None:
    deadline = time.monotonic() + timeout
    while not running.done():
        if worker.worker_id is not None:
            cur = await conn.execute(
                query("testing_drain_pending"), {"queues": list(queues), "worker_id": worker.worker_id}
            )
            if await cur.fetchone() == (False,):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs of queues {', '.join(queues)} were still due or running after {timeout:g}s")
        await asyncio.sleep(_POLL)


async def _outcomes(conn: psycopg.AsyncConnection[tuple[object, ...]], ids: list[int]) -> list[Outcome]:
    if not ids:
        return []
    cur = await conn.execute(query("testing_outcomes"), {"ids": ids})
    rows = {row[0]: row for row in await cur.fetchall()}
    return [Outcome(*rows[job_id]) for job_id in ids if job_id in rows]  # type: ignore[arg-type]
