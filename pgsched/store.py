"""JobStore: enqueue and read jobs by id. Async for services, a small sync twin for callers.

Data layer. The worker's transitions (claim, finish, hand back) live in ``worker_store``, fenced on
each claim's lease; an operator's changes (list, update, cancel, retry, redrive) in ``operator_store``.
psycopg errors stop here and become pgsched errors. The one enqueue path of every surface lives here:
``job_insert`` (one job, insert-or-return in one statement) and ``job_insert_many`` (which asks the
dedupe cache, and returns a cached id only once a primary-key read shows the job still holds that run
key); the rows and parameters they send are built in ``enqueue_rows``. ``job_delete`` is here too: it
forgets the job's run key in the same cache.

A connection can die under a statement (a database restart the pool's check did not see yet): a
pooled ``job_insert`` with a run key is then tried once more on a fresh connection. That is safe
only because the key makes it idempotent (the second try returns the job if the first committed);
without a key the insert may or may not have committed, so ``DatabaseUnavailable`` goes to the
caller, who was never told the job exists.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from pgsched import db, enqueue_rows
from pgsched.clock import Clock, SystemClock
from pgsched.dedupe import DedupeCache, NullCache
from pgsched.errors import DatabaseUnavailable, InvalidStateError
from pgsched.job import NewJob, PlainJob
from pgsched.job_row import Job
from pgsched.queries import query

__all__ = [
    "Added",
    "AsyncJobStore",
    "Inserted",
    "JobRef",
    "JobStore",
]


@dataclass(frozen=True, slots=True)
class Inserted:
    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class JobRef:
    """What an enqueue call knows of a job it created: its id, and what the "enqueued" event names."""

    id: int
    task: str
    queue: str
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Added:
    """A job created by an enqueue call without a run key (``job_add``)."""

    job: JobRef
    created: bool = True


# libpq 14 or later: a bulk enqueue sends its id reserve in a pipeline and builds its first jobs while it runs.
_PIPELINES = psycopg.Pipeline.is_supported()


def _copy_data(
    cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any],
    clock: Clock,
    ids: Sequence[int],
    jobs: Iterable[NewJob | PlainJob],
    defaults: enqueue_rows.Defaults,
    labelled: bool,
) -> Iterator[bytes]:
    """The COPY data of these jobs, in the cursor's connection encoding; a job without a due time is due now."""
    now, encoding = clock.now(), cur.connection.info.encoding
    return enqueue_rows.copy_blocks(ids, jobs, now=now, defaults=defaults, labelled=labelled, encoding=encoding)


def _died_under(exc: DatabaseUnavailable) -> bool:
    """The connection broke during the statement; not a statement timeout, nor no connection to be had (a retry
    would only wait those out again)."""
    cause = exc.__cause__
    broke = isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    return broke and not isinstance(cause, PoolTimeout | pg_errors.QueryCanceled)


class JobStore:
    """Synchronous job access for application code (enqueue from a web request, a script, a test)."""

    def __init__(self, pool: ConnectionPool, *, clock: Clock | None = None, cache: DedupeCache | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._cache: DedupeCache = cache or NullCache()
        self._scope: str | None = None

    @contextlib.contextmanager
    def _conn(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        with db.translated():
            if conn is not None:
                yield conn
            else:
                with self._pool.connection() as pooled:
                    yield pooled

    def job_add(self, job: NewJob, *, conn: psycopg.Connection[Any] | None = None) -> Added | Inserted:
        """An enqueue call's insert: ``job_insert``, but a job without a run key comes back as its id and queue only."""
        if job.run_key is not None:
            return self.job_insert(job, conn=conn)
        with self._conn(conn) as c, c.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(
                enqueue_rows.insert_query(job, whole=False), enqueue_rows.insert_params(job, self._clock.db_now())
            ).fetchone()
        assert row is not None
        return Added(JobRef(row[0], job.task, row[1]))

    def job_insert(self, job: NewJob, *, conn: psycopg.Connection[Any] | None = None) -> Inserted:
        """One job, insert-or-return in one statement. No cache here: that statement answers a taken
        run key as fast as a verified cache hit would (a Redis GET plus a primary-key read). A pooled insert
        with a run key is tried once more when its connection dies under it (see the module docstring)."""
        if conn is None and job.run_key is not None:
            try:
                return self._insert_one(job, None)
            except DatabaseUnavailable as exc:
                if not _died_under(exc):
                    raise
                return self._insert_one(job, None)
        return self._insert_one(job, conn)

    def _insert_one(self, job: NewJob, conn: psycopg.Connection[Any] | None) -> Inserted:
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            for _ in range(5):
                statement = enqueue_rows.insert_query(job)
                params = enqueue_rows.insert_params(job, self._clock.db_now())
                if enqueue_rows.replaces([job]):
                    row = db.execute_moving(cur, statement, params).fetchone()
                else:
                    row = cur.execute(statement, params).fetchone()
                if row is not None and row["id"] is not None:
                    return Inserted(Job.from_row(row), row["holder"] is None)
                if row is None:
                    continue
                # Read in a statement of its own: the insert's snapshot predates a holder it waited for or replaced.
                held = cur.execute(query("job_get"), {"id": row["holder"]}).fetchone()
                if held is not None:
                    return Inserted(Job.from_row(held), False)
            raise InvalidStateError(f"run_key {job.run_key!r} is contended; retry the enqueue")

    def job_insert_many(self, jobs: Sequence[NewJob], *, conn: psycopg.Connection[Any] | None = None) -> list[int]:
        """Insert jobs in one COPY (or one keyed INSERT); ids in order. Run keys that the cache
        names, and PostgreSQL confirms, are answered without inserting (not in a caller's transaction)."""
        keys = enqueue_rows.cacheable(jobs)
        if conn is not None or not keys or not self._cache.enabled:
            return self._insert_many(jobs, conn) if jobs else []
        scope = self._cache_scope()
        known = self._verified(scope, self._cache.get_many(scope, keys))
        fresh = [j for j in jobs if j.run_key not in known]
        ids = self._insert_many(fresh, None) if fresh else []
        self._cache.put_many(scope, enqueue_rows.learned(fresh, ids))
        return enqueue_rows.merged(jobs, known, ids)

    def _verified(self, scope: str, hints: Mapping[str, int]) -> dict[str, int]:
        if not hints:
            return {}
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                query("run_key_holders"), enqueue_rows.holders_params(hints, self._clock.db_now())
            ).fetchall()
        known = enqueue_rows.still_held(hints, rows)
        self._cache.forget(scope, [k for k in hints if k not in known])
        return known

    def _cache_scope(self) -> str:
        if self._scope is None:
            with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
                row = cur.execute(query("dedupe_scope_get")).fetchone()
            assert row is not None
            self._scope = str(row["scope"])
        return self._scope

    def _insert_many(self, jobs: Sequence[NewJob], conn: psycopg.Connection[Any] | None) -> list[int]:
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            reserve = enqueue_rows.reserve_params(len(jobs), enqueue_rows.unresolved(jobs), apart=c.autocommit)
            row = cur.execute(query("job_ids_reserve"), reserve).fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            defaults = enqueue_rows.reserved_defaults(row)
            if any(j.run_key is not None for j in jobs):
                keyed = enqueue_rows.keyed_params(ids, jobs, defaults, self._clock.db_now())
                if enqueue_rows.replaces(jobs):
                    rows = db.execute_moving(cur, query("job_insert_many_keyed"), keyed).fetchall()
                else:
                    rows = cur.execute(query("job_insert_many_keyed"), keyed).fetchall()
                return enqueue_rows.ids_in_order(ids, jobs, {r["run_key"]: r["id"] for r in rows})
            self._copy(cur, ids, jobs, defaults, enqueue_rows.labelled(jobs))
            return ids

    def job_copy(
        self, jobs: Iterable[NewJob | PlainJob], *, count: int, names: Sequence[str], labelled: bool
    ) -> list[int]:
        """``count`` jobs without run keys in one COPY, each row sent as ``jobs`` yields it: a generator that
        validates overlaps with the server's work (its first tenth with the id reserve, the rest with the
        insert), and an exception it raises stores nothing (the reserved ids are skipped). ``names``: every task
        whose rows may leave a default out; ``labelled``: whether any row may carry tags, meta or a deadline.
        Not in a caller's transaction, which the failed COPY would abort."""
        if count == 0:
            return []
        rest = iter(jobs)
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            reserve = enqueue_rows.reserve_params(count, names, apart=c.autocommit)
            with c.pipeline() if _PIPELINES else contextlib.nullcontext():  # the reserve runs while jobs are built
                cur.execute(query("job_ids_reserve"), reserve)
                first = enqueue_rows.ahead(rest, count)
            row = cur.fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            self._copy(cur, ids, itertools.chain(first, rest), enqueue_rows.reserved_defaults(row), labelled)
            return ids

    def _copy(
        self,
        cur: psycopg.Cursor[Any],
        ids: Sequence[int],
        jobs: Iterable[NewJob | PlainJob],
        defaults: enqueue_rows.Defaults,
        labelled: bool,
    ) -> None:
        blocks = _copy_data(cur, self._clock, ids, jobs, defaults, labelled)
        with cur.copy(enqueue_rows.copy_statement(labelled)) as copy:
            for block in blocks:
                copy.write(block)

    def job_get(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job | None:
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("job_get"), {"id": job_id}).fetchone()
            return Job.from_row(row) if row else None


class AsyncJobStore:
    """Asynchronous job access for the worker, the API and the leader."""

    def __init__(
        self, pool: AsyncConnectionPool, *, clock: Clock | None = None, cache: DedupeCache | None = None
    ) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._cache: DedupeCache = cache or NullCache()
        self._scope: str | None = None

    @contextlib.asynccontextmanager
    async def _conn(self, conn: psycopg.AsyncConnection[Any] | None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with db.translated():
            if conn is not None:
                yield conn
            else:
                async with self._pool.connection() as pooled:
                    yield pooled

    async def job_add(self, job: NewJob, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Added | Inserted:
        """The async twin of ``JobStore.job_add``."""
        if job.run_key is not None:
            return await self.job_insert(job, conn=conn)
        async with self._conn(conn) as c, c.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                enqueue_rows.insert_query(job, whole=False), enqueue_rows.insert_params(job, self._clock.db_now())
            )
            row = await cur.fetchone()
        assert row is not None
        return Added(JobRef(row[0], job.task, row[1]))

    async def job_insert(self, job: NewJob, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Inserted:
        """The async twin of ``JobStore.job_insert``."""
        if conn is None and job.run_key is not None:
            try:
                return await self._insert_one(job, None)
            except DatabaseUnavailable as exc:
                if not _died_under(exc):
                    raise
                return await self._insert_one(job, None)
        return await self._insert_one(job, conn)

    async def _insert_one(self, job: NewJob, conn: psycopg.AsyncConnection[Any] | None) -> Inserted:
        async with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            for _ in range(5):
                statement = enqueue_rows.insert_query(job)
                params = enqueue_rows.insert_params(job, self._clock.db_now())
                if enqueue_rows.replaces([job]):
                    await db.execute_moving_async(cur, statement, params)
                else:
                    await cur.execute(statement, params)
                row = await cur.fetchone()
                if row is not None and row["id"] is not None:
                    return Inserted(Job.from_row(row), row["holder"] is None)
                if row is None:
                    continue
                await cur.execute(query("job_get"), {"id": row["holder"]})
                held = await cur.fetchone()
                if held is not None:
                    return Inserted(Job.from_row(held), False)
            raise InvalidStateError(f"run_key {job.run_key!r} is contended; retry the enqueue")

    async def job_insert_many(
        self, jobs: Sequence[NewJob], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[int]:
        """The async twin of ``JobStore.job_insert_many``."""
        keys = enqueue_rows.cacheable(jobs)
        if conn is not None or not keys or not self._cache.enabled:
            return await self._insert_many(jobs, conn) if jobs else []
        scope = await self._cache_scope()
        known = await self._verified(scope, await self._cache.get_many_async(scope, keys))
        fresh = [j for j in jobs if j.run_key not in known]
        ids = await self._insert_many(fresh, None) if fresh else []
        await self._cache.put_many_async(scope, enqueue_rows.learned(fresh, ids))
        return enqueue_rows.merged(jobs, known, ids)

    async def _verified(self, scope: str, hints: Mapping[str, int]) -> dict[str, int]:
        if not hints:
            return {}
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("run_key_holders"), enqueue_rows.holders_params(hints, self._clock.db_now()))
            known = enqueue_rows.still_held(hints, await cur.fetchall())
        await self._cache.forget_async(scope, [k for k in hints if k not in known])
        return known

    async def _cache_scope(self) -> str:
        if self._scope is None:
            async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("dedupe_scope_get"))
                row = await cur.fetchone()
            assert row is not None
            self._scope = str(row["scope"])
        return self._scope

    async def _insert_many(self, jobs: Sequence[NewJob], conn: psycopg.AsyncConnection[Any] | None) -> list[int]:
        async with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            reserve = enqueue_rows.reserve_params(len(jobs), enqueue_rows.unresolved(jobs), apart=c.autocommit)
            await cur.execute(query("job_ids_reserve"), reserve)
            row = await cur.fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            defaults = enqueue_rows.reserved_defaults(row)
            if any(j.run_key is not None for j in jobs):
                keyed = enqueue_rows.keyed_params(ids, jobs, defaults, self._clock.db_now())
                if enqueue_rows.replaces(jobs):
                    await db.execute_moving_async(cur, query("job_insert_many_keyed"), keyed)
                else:
                    await cur.execute(query("job_insert_many_keyed"), keyed)
                by_key = {r["run_key"]: r["id"] for r in await cur.fetchall()}
                return enqueue_rows.ids_in_order(ids, jobs, by_key)
            await self._copy(cur, ids, jobs, defaults, enqueue_rows.labelled(jobs))
            return ids

    async def job_copy(
        self, jobs: Iterable[NewJob | PlainJob], *, count: int, names: Sequence[str], labelled: bool
    ) -> list[int]:
        """The async twin of ``JobStore.job_copy``."""
        if count == 0:
            return []
        rest = iter(jobs)
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            async with c.pipeline() if _PIPELINES else contextlib.nullcontext():
                await cur.execute(
                    query("job_ids_reserve"), enqueue_rows.reserve_params(count, names, apart=c.autocommit)
                )
                first = enqueue_rows.ahead(rest, count)
            row = await cur.fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            await self._copy(cur, ids, itertools.chain(first, rest), enqueue_rows.reserved_defaults(row), labelled)
            return ids

    async def _copy(
        self,
        cur: psycopg.AsyncCursor[Any],
        ids: Sequence[int],
        jobs: Iterable[NewJob | PlainJob],
        defaults: enqueue_rows.Defaults,
        labelled: bool,
    ) -> None:
        blocks = _copy_data(cur, self._clock, ids, jobs, defaults, labelled)
        async with cur.copy(enqueue_rows.copy_statement(labelled)) as copy:
            for block in blocks:
                await copy.write(block)

    async def job_get(self, job_id: int) -> Job | None:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_get"), {"id": job_id})
            row = await cur.fetchone()
            return Job.from_row(row) if row else None

    async def job_delete(self, job_id: int) -> bool:
        """Delete a finished job, and its run key from the dedupe cache (verification would catch it anyway)."""
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("job_delete"), {"id": job_id})
            row = await cur.fetchone()
        if row is not None and row["run_key"] is not None and self._cache.enabled:
            await self._cache.forget_async(await self._cache_scope(), [row["run_key"]])
        return row is not None
