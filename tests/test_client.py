"""The Python API: Pgsched, @app.task, enqueue (sync, async, transactional, bulk) and validation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched import Pgsched, Settings, ValidationError, db
from tests.support import wire


def test_task_decorator_registers_and_enqueues_with_task_defaults(
    app: Pgsched, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    @app.task(queue="emails", max_attempts=7, timeout=30)
    async def send_email(to: str) -> None:
        pass

    job_id = send_email.enqueue(to="a@example.com")
    row = conn.execute("SELECT * FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    assert (row["task"], row["queue"], row["max_attempts"], row["args"]) == (
        "send_email",
        "emails",
        7,
        {"to": "a@example.com"},
    )
    assert row["timeout"] == timedelta(seconds=30)
    assert app.tasks.get("send_email").is_async


async def test_enqueue_async_and_options(async_app: Pgsched, conn: psycopg.Connection[dict[str, Any]]) -> None:
    @async_app.task(name="custom.name")
    def work(n: int) -> int:
        return n

    job_id = await work.enqueue_async(n=3, priority=5, delay=60, run_key="r1")
    again = await work.enqueue_async(n=4, run_key="r1")
    assert again == job_id
    row = conn.execute("SELECT task, priority, run_at > now() + interval '50 s' AS later FROM pgsched.jobs").fetchone()
    assert row == {"task": "custom.name", "priority": 5, "later": True}


def test_transactional_enqueue_exists_only_if_the_callers_transaction_commits(
    app: Pgsched, dsn: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    with psycopg.connect(dsn) as caller:
        app.enqueue("t", {"n": 1}, conn=caller)
        caller.rollback()
        app.enqueue("t", {"n": 2}, conn=caller)
        caller.commit()
    rows = conn.execute("SELECT args FROM pgsched.jobs").fetchall()
    assert rows == [{"args": {"n": 2}}]


def test_twenty_concurrent_enqueuers_of_one_run_key_make_one_job(
    settings: Settings, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def enqueue() -> None:
        local = Pgsched(settings=settings)
        try:
            barrier.wait()
            ids.append(local.enqueue("once", {"x": 1}, run_key="the-key"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            local.close()

    threads = [threading.Thread(target=enqueue) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(ids) == 20 and len(set(ids)) == 1
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 1}


def test_threads_sharing_one_app_open_one_pool(settings: Settings) -> None:
    """The client's pool is opened on first use: threads racing to that first use must share one pool
    (a pool opened per thread and dropped leaks its connections and worker threads)."""
    app = Pgsched(settings=settings)
    opened: list[int] = []
    barrier = threading.Barrier(8)
    real = db.sync_pool

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return real(*args, **kwargs)

    def enqueue(k: int) -> None:
        barrier.wait()
        app.enqueue("noop", {"k": k})

    try:
        db.sync_pool = counting  # type: ignore[assignment]
        threads = [threading.Thread(target=enqueue, args=[k]) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        db.sync_pool = real  # type: ignore[assignment]
        app.close()
    assert len(opened) == 1


def test_enqueue_many_takes_post_jobs_items(app: Pgsched, conn: psycopg.Connection[dict[str, Any]]) -> None:
    ids = app.enqueue_many(
        [
            {"task": "a", "args": {"i": 1}},
            {"task": "b", "queue": "q2", "priority": 3, "delay_seconds": 30},
            {"task": "c", "run_key": "k"},
        ]
    )
    rows = conn.execute("SELECT id, task, queue FROM pgsched.jobs ORDER BY id").fetchall()
    assert [r["id"] for r in rows] == ids
    assert [(r["task"], r["queue"]) for r in rows] == [("a", "default"), ("b", "q2"), ("c", "default")]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda a: a.enqueue("t", {"x": "\x00"}), "args"),
        (lambda a: a.enqueue("t", [1, 2]), "args"),
        (lambda a: a.enqueue("t", {"big": "x" * (1024 * 1024 + 1)}), "args"),
        (lambda a: a.enqueue("t", queue="UPPER"), "queue"),
        (lambda a: a.enqueue("bad name"), "task"),
        (lambda a: a.enqueue("t", priority=1001), "priority"),
        (lambda a: a.enqueue("t", run_at=datetime(2030, 1, 1)), "run_at"),
        (lambda a: a.enqueue("t", max_attempts=0), "max_attempts"),
        (lambda a: a.enqueue_many([{"task": "ok"}, {"task": "ok", "colour": "red"}]), "items[1].colour"),
    ],
)
def test_bad_input_raises_a_validation_error_naming_the_field_and_stores_nothing(
    app: Pgsched, conn: psycopg.Connection[dict[str, Any]], call: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        call(app)
    assert info.value.field == field
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 0}


def test_a_bad_item_deep_in_a_bulk_enqueue_stores_nothing_and_the_next_call_works(
    app: Pgsched, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    # enqueue_many builds each job while its COPY runs: a bad item after thousands of rows already sent ends the
    # COPY, with the error naming the item and its field, and the pooled connection serves the next call.
    items: list[dict[str, Any]] = [{"task": "ok", "args": {"i": i}} for i in range(3000)]
    items[2500] = {"task": "ok", "priority": 5000}
    with pytest.raises(ValidationError) as info:
        app.enqueue_many(items)
    assert (info.value.field, conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()) == (
        "items[2500].priority",
        {"n": 0},
    )
    ids = app.enqueue_many([{"task": "ok", "tags": ["t"]}, {"task": "ok", "start_within_seconds": 60}])
    rows = conn.execute("SELECT id, tags, expires_at IS NOT NULL AS expires FROM pgsched.jobs ORDER BY id").fetchall()
    assert rows == [{"id": ids[0], "tags": ["t"], "expires": False}, {"id": ids[1], "tags": [], "expires": True}]


async def test_a_bad_item_in_an_async_bulk_enqueue_stores_nothing(
    async_app: Pgsched, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    items: list[object] = [{"task": "ok"}] * 2000 + ["not an object"]
    with pytest.raises(ValidationError) as info:
        await async_app.enqueue_many_async(items)  # type: ignore[arg-type]
    assert info.value.field == "items[2000].item"
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 0}
    assert len(await async_app.enqueue_many_async([{"task": "ok"}] * 3)) == 3


def test_run_at_is_stored_as_the_instant_given(app: Pgsched) -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    job = app.get_job(app.enqueue("t", run_at=when))
    assert job is not None
    assert job.run_at == when


def test_without_a_dsn_enqueue_says_how_to_configure(tmp_path: Any) -> None:
    from pgsched.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="PGSCHED_DSN"):
        Pgsched(settings=Settings()).enqueue("t")


def test_a_warm_client_sends_one_statement_per_enqueue_and_no_pool_ping(app: Pgsched, tmp_path: Path) -> None:
    client = app.client
    client.enqueue("t")  # opens the pool
    pool = client._pool
    assert pool is not None
    trace = tmp_path / "libpq.trace"
    with wire.traced(pool, trace):  # every connection the enqueues below can get
        for n in range(5):
            client.enqueue("t", {"n": n})
    sent = [name for name, _ in wire.sent(trace)]
    assert sent.count("Bind") == 5, sent  # one statement per enqueue
    assert "Query" not in sent, sent  # no "is it alive?" round trip on a connection in steady use
