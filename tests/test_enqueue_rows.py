"""The COPY of a bulk enqueue as PostgreSQL receives it: every column as a single enqueue stores it, rows sent in
blocks while later ones are built, the id reserve running while the first jobs are built and its commit setting kept
to its own transaction."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import Pgsched, ValidationError
from pgsched.enqueue_rows import COPY_BLOCK_BYTES
from pgsched.job import NewJob
from tests.support.wire import sent, traced

Conn = psycopg.Connection[dict[str, Any]]

_COLUMNS = (
    "task, args, queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit, tags, meta,"
    " expires_at, state, run_key"
)

# Every option a COPY row carries, with values whose binary forms have edges: text past ASCII, an interval with days
# and microseconds, negative and NULL numbers, instants with microseconds, an empty and a two-element array.
_OPTIONS: list[dict[str, Any]] = [
    {"task": "plain"},
    {"task": "plain", "args": {"name": "Zoë", "n": [1, 2.5, None]}, "queue": "q.u-1"},
    {
        "task": "full:opts",
        "args": {"k": "\u00e9\u6f22"},
        "queue": "other",
        "priority": -1000,
        "run_at": datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        "max_attempts": 1000,
        "timeout": timedelta(days=2, seconds=3, microseconds=7),
        "concurrency_key": "tenant-\u00e9",
        "concurrency_limit": 3,
    },
    {
        "task": "labelled",
        "tags": ["a", "\u00fc\u6f22"],
        "meta": {"tenant": "\u00e9", "n": 1},
        "expires_at": datetime(2032, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "priority": 7,
    },
    {"task": "labelled", "tags": [], "meta": {}, "timeout": 0.25},
]


def _stored(conn: Conn, ids: list[int]) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {_COLUMNS}, run_at < '2030-01-01' AS due_now FROM pgsched.jobs WHERE id = ANY(%s) ORDER BY id", [ids]
    ).fetchall()
    for row in rows:
        if row.pop("due_now"):  # given no run_at: due at the insert (the server's clock or the client's)
            row["run_at"] = "now"
    return rows


def test_a_copied_job_stores_every_column_as_a_single_enqueue_does(app: Pgsched, conn: Conn) -> None:
    one_by_one = [
        app.enqueue(o["task"], o.get("args"), **{k: v for k, v in o.items() if k not in ("task", "args")})
        for o in _OPTIONS
    ]
    unlabelled = app.enqueue_many(_OPTIONS[:3])
    labelled = app.enqueue_many(_OPTIONS)
    expected = _stored(conn, one_by_one)
    assert _stored(conn, unlabelled) == expected[:3]
    assert _stored(conn, labelled) == expected
    assert [unlabelled, labelled] == [sorted(unlabelled), sorted(labelled)]


async def test_an_async_copied_job_stores_every_column_as_a_single_enqueue_does(async_app: Pgsched, conn: Conn) -> None:
    one_by_one = [
        await async_app.enqueue_async(
            o["task"], o.get("args"), **{k: v for k, v in o.items() if k not in ("task", "args")}
        )
        for o in _OPTIONS
    ]
    copied = await async_app.enqueue_many_async(_OPTIONS)
    assert _stored(conn, copied) == _stored(conn, one_by_one)


def test_a_bulk_enqueue_sends_its_rows_in_blocks_of_about_8_kib(app: Pgsched, tmp_path: Path) -> None:
    # The server inserts the first rows while the client still builds later ones: a call of 1,000 rows (some 76 KB)
    # goes out as about ten CopyData messages, not as psycopg's 32 KiB buffers (three, the last sent after every row
    # was built).
    client = app.client
    client.enqueue("t")  # opens the pool
    pool = client._pool
    assert pool is not None
    trace = tmp_path / "libpq.trace"
    with traced(pool, trace):
        ids = app.enqueue_many([{"task": "t", "queue": "default", "args": {"n": n}} for n in range(1000)])
    sizes = [length for name, length in sent(trace) if name == "CopyData"]
    assert len(ids) == 1000
    assert len(sizes) >= 8, sizes
    assert max(sizes) <= COPY_BLOCK_BYTES + 200, sizes  # a block ends with the row that passed the size


def test_the_id_reserve_turns_synchronous_commit_off_for_its_own_transaction_only(app: Pgsched, dsn: str) -> None:
    # The reserve's commit need not wait for WAL when it is a transaction of its own (the pool's autocommit
    # connection): the COPY's commit flushes it. Neither the pool's sessions nor a caller's transaction keep that.
    with psycopg.connect(dsn, row_factory=dict_row) as caller:
        durable = caller.execute("SHOW synchronous_commit").fetchone()
        assert durable == {"synchronous_commit": "on"}
        app.enqueue_many([{"task": "t", "tags": ["x"]}, {"task": "t", "run_key": "k"}], conn=caller)
        app.enqueue_many([{"task": "t"}], conn=caller)
        assert caller.execute("SHOW synchronous_commit").fetchone() == durable
    for _ in range(3):
        app.enqueue_many([{"task": "t"}] * 10)
        app.enqueue_many([{"task": "t", "run_key": f"r{_}"}])
    pool = app.client._pool
    assert pool is not None
    with contextlib.ExitStack() as held:
        pooled = [held.enter_context(pool.connection()) for _ in range(pool.max_size)]  # the ones used among them
        assert [c.execute("SHOW synchronous_commit").fetchone() for c in pooled] == [durable] * len(pooled)


def test_a_bulk_enqueue_builds_its_first_jobs_while_its_id_reserve_runs(app: Pgsched, dsn: str) -> None:
    # The reserve goes out in a pipeline and the client builds the first tenth of the jobs before reading its answer:
    # while the first job is built, the reserve's transaction (nextval gave it an xid) has not ended yet.
    seen: list[int] = []

    def jobs() -> Iterator[NewJob]:
        # Polled: on a busy machine the server may not have run the reserve yet when the builder starts; it cannot
        # end its transaction before the client reads its answer, after this builder has yielded its first jobs.
        deadline, found = time.monotonic() + 5, 0
        with psycopg.connect(dsn, autocommit=True) as watcher:
            while not found and time.monotonic() < deadline:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'pgsched:client:%%' AND backend_xid IS NOT NULL"
                ).fetchone()
                found = row[0] if row else 0
                if not found:
                    time.sleep(0.01)
        seen.append(found)
        for n in range(100):
            yield NewJob.build("t", {"n": n}, queue="default", priority=0, max_attempts=5)

    ids = app.client._store().job_copy(jobs(), count=100, names=[], labelled=False)
    assert (len(ids), seen) == (100, [1])


def test_a_bad_item_among_those_built_during_the_reserve_stores_nothing(app: Pgsched, conn: Conn) -> None:
    items: list[dict[str, Any]] = [{"task": "ok"} for _ in range(1000)]
    items[3] = {"task": "ok", "queue": "Not Valid"}
    with pytest.raises(ValidationError) as info:
        app.enqueue_many(items)
    assert info.value.field == "items[3].queue"
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 0}
    assert len(app.enqueue_many([{"task": "ok"}] * 3)) == 3


async def test_a_bad_item_among_those_built_during_an_async_reserve_stores_nothing(
    async_app: Pgsched, conn: Conn
) -> None:
    items: list[dict[str, Any]] = [{"task": "ok"} for _ in range(1000)]
    items[0] = {"task": "ok", "priority": "high"}
    with pytest.raises(ValidationError) as info:
        await async_app.enqueue_many_async(items)
    assert info.value.field == "items[0].priority"
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": 0}
    assert len(await async_app.enqueue_many_async([{"task": "ok"}] * 3)) == 3
