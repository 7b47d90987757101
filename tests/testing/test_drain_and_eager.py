"""pgsched.testing against a real PostgreSQL: drain through a real worker, eager inline runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgsched import ConfigurationError, Pgsched, RetryPolicy, ValidationError
from pgsched.context import current_job
from pgsched.testing import drain, drain_async, eager

Conn = psycopg.Connection[dict[str, Any]]


def _count(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()
    assert row is not None
    return int(row["n"])


def test_drain_runs_due_jobs_only_and_reports_success_death_and_pending_retry(app: Pgsched, conn: Conn) -> None:
    @app.task
    def double(n: int) -> int:
        return 2 * n

    @app.task(max_attempts=1)
    def explode() -> None:
        raise RuntimeError("boom")

    @app.task(max_attempts=3, retry=RetryPolicy(base_seconds=300, jitter=0.0))
    def flaky() -> None:
        raise RuntimeError("later")

    first = app.enqueue("double", {"n": 21})
    dead = explode.enqueue()
    retry = flaky.enqueue()  # task defaults (attempts, retry policy) come with task.enqueue
    later = app.enqueue("double", {"n": 1}, run_at=datetime.now(UTC) + timedelta(hours=1))
    outcomes = {o.id: o for o in drain(app)}
    assert set(outcomes) == {first, dead, retry}  # the job due in an hour did not run
    assert (outcomes[first].state, outcomes[first].result, outcomes[first].error) == ("succeeded", 42, None)
    assert (outcomes[dead].state, outcomes[dead].error) == ("dead", "RuntimeError: boom")
    assert (outcomes[retry].state, outcomes[retry].attempt, outcomes[retry].error) == (
        "queued",
        1,
        "RuntimeError: later",
    )
    row = conn.execute("SELECT state, worker_id FROM pgsched.jobs WHERE id = %s", [later]).fetchone()
    assert row == {"state": "queued", "worker_id": None}


async def test_drain_async_serves_only_the_queues_it_is_given(async_app: Pgsched) -> None:
    @async_app.task(queue="a")
    async def in_a() -> str:
        return "a"

    @async_app.task(queue="b")
    async def in_b() -> str:
        return "b"

    await in_a.enqueue_async()
    await in_b.enqueue_async()
    assert [o.result for o in await drain_async(async_app, queues=["b"])] == ["b"]
    assert [o.result for o in await drain_async(async_app)] == ["a"]


def test_drain_gives_up_with_a_timeout_error_while_due_jobs_cannot_run(app: Pgsched, conn: Conn) -> None:
    @app.task
    def stuck() -> None:
        return None

    app.enqueue("stuck")
    conn.execute("SELECT pgsched.pause_queue('default')")
    with pytest.raises(TimeoutError, match="still due or running"):
        drain(app, timeout=1.0)


def test_eager_runs_the_task_inline_with_a_job_context_and_writes_no_row(app: Pgsched, conn: Conn) -> None:
    seen: list[Any] = []

    @app.task(queue="q")
    def remember(values: Any) -> str:
        seen.append((values, current_job().queue, current_job().attempt))
        return "done"

    with eager(app) as run:
        assert app.enqueue("remember", {"values": (1, 2)}) == 1
        assert remember.enqueue(values="x") == 2
    # arguments arrive JSON round-tripped, as from a worker; app.enqueue takes the task's declared queue too
    assert seen == [([1, 2], "q", 1), ("x", "q", 1)]
    assert [o.result for o in run.outcomes] == ["done", "done"]
    assert _count(conn) == 0
    assert isinstance(remember.enqueue(values=1), int) and _count(conn) == 1  # outside the block: a real job


async def test_eager_raises_a_task_error_or_records_it_when_told_not_to_propagate(async_app: Pgsched) -> None:
    @async_app.task
    async def fails(reason: str) -> None:
        raise ValueError(reason)

    with eager(async_app) as run, pytest.raises(ValueError, match="first"):
        await fails.enqueue_async(reason="first")
    with eager(async_app, propagate=False) as quiet:
        assert await async_app.enqueue_async("fails", {"reason": "second"}) == 1
    assert [(o.state, o.error) for o in run.outcomes + quiet.outcomes] == [
        ("dead", "ValueError: first"),
        ("dead", "ValueError: second"),
    ]


def test_eager_still_validates_like_a_real_enqueue_and_refuses_transactional_tasks(app: Pgsched) -> None:
    @app.task(transactional=True)
    async def in_tx(conn: Any) -> None:
        return None

    with eager(app):
        with pytest.raises(ValidationError):
            app.enqueue("in_tx", {"x": object()})
        with pytest.raises(ConfigurationError, match="transactional"):
            in_tx.enqueue()


def test_eager_runs_each_item_of_enqueue_many_at_once_whatever_its_delay(app: Pgsched) -> None:
    @app.task
    def square(n: int) -> int:
        return n * n

    with eager(app) as run:
        items = [{"task": "square", "args": {"n": 2}}, {"task": "square", "args": {"n": 3}, "delay_seconds": 60}]
        assert app.enqueue_many(items) == [1, 2]
    assert [o.result for o in run.outcomes] == [4, 9]
