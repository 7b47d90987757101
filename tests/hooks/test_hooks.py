"""Lifecycle hooks and task middleware with a real worker on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from pgsched import JobEvent, Pgsched, RetryPolicy, ValidationError
from pgsched.context import JobContext
from pgsched.testing import drain, drain_async
from pgsched.worker import Worker, WorkerConfig
from tests.support.factories import register_tasks
from tests.support.waiting import await_until

Conn = psycopg.Connection[dict[str, Any]]
RETRY_NOW = RetryPolicy(base_seconds=0.0, jitter=0.0)  # the retry is due at once: one drain runs both attempts


def test_every_lifecycle_event_reaches_its_listeners_in_order(app: Pgsched) -> None:
    events: list[tuple[str, str, int, str | None]] = []

    def listen(event: JobEvent) -> None:
        events.append((event.event, event.task, event.attempt, event.error))

    for name in ("enqueued", "job_started", "job_succeeded", "job_failed", "job_dead"):
        app.on(name)(listen)  # type: ignore[arg-type]

    @app.task
    def ok() -> int:
        return 1

    @app.task(max_attempts=2, retry=RETRY_NOW)
    def bad() -> None:
        raise KeyError("k")

    ok.enqueue()
    drain(app)
    bad.enqueue()
    (outcome,) = drain(app)
    assert (outcome.state, outcome.attempt) == ("dead", 2)
    assert events[:3] == [("enqueued", "ok", 0, None), ("job_started", "ok", 1, None), ("job_succeeded", "ok", 1, None)]
    assert events[3:5] == [("enqueued", "bad", 0, None), ("job_started", "bad", 1, None)]
    assert events[5:] == [
        ("job_failed", "bad", 1, "KeyError: 'k'"),
        ("job_started", "bad", 2, None),
        ("job_dead", "bad", 2, "KeyError: 'k'"),
    ]


def test_job_started_carries_the_worker_id_and_a_run_key_duplicate_is_not_enqueued_again(app: Pgsched) -> None:
    started: list[JobEvent] = []
    enqueued: list[int] = []
    app.on("job_started")(started.append)
    app.on("enqueued")(lambda event: enqueued.append(event.job_id))

    @app.task
    def once() -> None:
        return None

    first = once.enqueue(run_key="k1")
    assert once.enqueue(run_key="k1") == first
    assert enqueued == [first]
    drain(app)
    assert [e.job_id for e in started] == [first] and started[0].worker_id is not None


def test_enqueued_names_the_queue_the_database_gave_a_task_this_app_does_not_define(
    app: Pgsched, dsn: str, conn: Conn
) -> None:
    # enqueue() reads back only the id and queue of a job without a run key (not the whole row): the event still
    # carries what PostgreSQL resolved from the task registry, in both the sync and the async call.
    register_tasks(dsn, "remote", queue="mail", priority=3)
    events: list[JobEvent] = []
    app.on("enqueued")(events.append)
    ids = [
        app.enqueue("remote", {"n": 1}),
        asyncio.run(_enqueue_and_close(app, "remote")),
        app.enqueue("remote", queue="q2"),
    ]
    rows = conn.execute("SELECT id, queue, priority FROM pgsched.jobs WHERE id = ANY(%s) ORDER BY id", [ids]).fetchall()
    assert [(r["id"], r["queue"], r["priority"]) for r in rows] == [
        (ids[0], "mail", 3),
        (ids[1], "mail", 3),
        (ids[2], "q2", 3),
    ]
    assert [(e.job_id, e.task, e.queue, e.attempt) for e in events] == [
        (ids[0], "remote", "mail", 0),
        (ids[1], "remote", "mail", 0),
        (ids[2], "remote", "q2", 0),
    ]


async def _enqueue_and_close(app: Pgsched, task: str) -> int:
    try:
        return await app.enqueue_async(task)
    finally:
        await app.aclose()


def test_a_failing_listener_is_logged_and_the_job_still_succeeds(
    app: Pgsched, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: JobEvent) -> None:
        raise RuntimeError(f"listener broke on {event.event}")

    for name in ("enqueued", "job_started", "job_succeeded"):
        app.on(name)(broken)  # type: ignore[arg-type]

    @app.task
    def fine() -> str:
        return "fine"

    with caplog.at_level(logging.ERROR, logger="pgsched.hooks"):
        job_id = fine.enqueue()
        (outcome,) = drain(app)
    assert (outcome.id, outcome.state, outcome.result) == (job_id, "succeeded", "fine")
    failures = [r for r in caplog.records if getattr(r, "event", None) == "hook_failed"]
    assert sorted(getattr(r, "hook", None) for r in failures) == ["enqueued", "job_started", "job_succeeded"]
    assert all(r.exc_info is not None for r in failures)


def test_an_unknown_event_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown event"):
        Pgsched().on("job_exploded")(print)  # type: ignore[arg-type]


_request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


async def test_middleware_of_both_kinds_wrap_each_attempt_outermost_first(async_app: Pgsched) -> None:
    trail: list[str] = []

    @async_app.middleware
    async def outer(job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        trail.append(f"outer>{job.task}")
        token = _request.set(f"req-{job.id}")
        try:
            return await call_next()
        finally:
            _request.reset(token)
            trail.append("outer<")

    @async_app.middleware
    @contextlib.asynccontextmanager
    async def inner(job: JobContext) -> AsyncIterator[None]:
        trail.append(f"inner>{job.attempt}")
        yield
        trail.append("inner<")

    @async_app.task
    def sync_task() -> str:
        return _request.get()  # runs in a thread: it sees what the middleware set

    job_id = await sync_task.enqueue_async()
    (outcome,) = await drain_async(async_app)
    assert outcome.result == f"req-{job_id}"
    assert trail == ["outer>sync_task", "inner>1", "inner<", "outer<"]


async def test_an_exception_from_middleware_fails_the_attempt_and_is_recorded(async_app: Pgsched) -> None:
    @async_app.middleware
    async def refuse(job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        raise PermissionError(f"no session for {job.task}")

    @async_app.task(max_attempts=1)
    async def guarded() -> str:
        return "ran"

    await guarded.enqueue_async()
    (outcome,) = await drain_async(async_app)
    assert (outcome.state, outcome.error) == ("dead", "PermissionError: no session for guarded")


async def test_a_transactional_task_that_commits_fires_job_succeeded(async_app: Pgsched, conn: Conn) -> None:
    succeeded: list[int] = []
    async_app.on("job_succeeded")(lambda event: succeeded.append(event.job_id))
    conn.execute("CREATE TABLE ledger (n int)")

    @async_app.task(transactional=True)
    async def book(conn: psycopg.AsyncConnection[Any], n: int) -> None:
        await conn.execute("INSERT INTO ledger VALUES (%s)", [n])

    job_id = await book.enqueue_async(n=5)
    await drain_async(async_app)
    assert succeeded == [job_id]
    assert conn.execute("SELECT n FROM ledger").fetchall() == [{"n": 5}]


async def test_a_long_running_worker_fires_events_for_jobs_enqueued_while_it_runs(async_app: Pgsched) -> None:
    ended: list[tuple[str, int]] = []
    async_app.on("job_succeeded")(lambda e: ended.append((e.event, e.job_id)))
    async_app.on("job_dead")(lambda e: ended.append((e.event, e.job_id)))

    @async_app.task(max_attempts=1)
    async def maybe(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    worker = Worker(async_app.tasks, async_app.settings, WorkerConfig(concurrency=4))
    running = asyncio.create_task(worker.run())
    try:
        ids = [await maybe.enqueue_async(fail=i % 2 == 1) for i in range(6)]

        async def all_ended() -> bool:
            return len(ended) == 6

        await await_until(all_ended, timeout=15)
    finally:
        worker.stop()
        await running
    assert sorted(ended, key=lambda e: e[1]) == [
        ("job_dead" if i % 2 else "job_succeeded", job_id) for i, job_id in enumerate(ids)
    ]
