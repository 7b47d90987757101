"""JobStore: enqueue, read and operator changes of jobs. Async for services, a small sync twin for callers.

Data layer. The worker's transitions (claim, finish, hand back) are not here: they live in
``worker_store``, fenced on each claim's lease. psycopg errors stop here and become
pgsched errors. The one enqueue path of every surface lives here: ``job_insert`` (one job,
insert-or-return in one statement) and ``job_insert_many`` (which asks the dedupe cache, and
returns a cached id only once a primary-key read shows the job still holds that run key).

A connection can die under a statement (a database restart the pool's check did not see yet): a
pooled ``job_insert`` with a run key is then tried once more on a fresh connection. That is safe
only because the key makes it idempotent (the second try returns the job if the first committed);
without a key the insert may or may not have committed, so ``DatabaseUnavailable`` goes to the
caller, who was never told the job exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.dedupe import DedupeCache, NullCache
from pgsched.errors import DatabaseUnavailable, InvalidStateError, JobNotFound
from pgsched.job import Job, JobState, NewJob, validate_queue
from pgsched.queries import query
from pgsched.queue_settings import QueueChanges

__all__ = [
    "AsyncJobStore",
    "Inserted",
    "JobChanges",
    "JobStore",
]

_COPY_TYPES = ["int8", "text", "jsonb", "text", "int2", "timestamptz", "int4", "interval", "text", "int4"]
_LABEL_TYPES = ["text[]", "jsonb", "timestamptz"]


@dataclass(frozen=True, slots=True)
class Inserted:
    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class JobChanges:
    """Validated changes for a queued job (PATCH /jobs/{id}); None keeps the current value."""

    run_at: datetime | None = None
    priority: int | None = None
    args: dict[str, Any] | None = None
    queue: str | None = None


def _died_under(exc: DatabaseUnavailable) -> bool:
    """The connection broke during the statement; not a statement timeout, nor no connection to be had (a retry
    would only wait those out again)."""
    cause = exc.__cause__
    broke = isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    return broke and not isinstance(cause, PoolTimeout | pg_errors.QueryCanceled)


def _as_is(text: str) -> str:
    return text


def _args(job: NewJob) -> Jsonb:
    """The job's args for psycopg, reusing the JSON text validation already produced."""
    return Jsonb(job.args) if job.args_json is None else Jsonb(job.args_json, dumps=_as_is)


def _insert_params(job: NewJob, now: datetime | None) -> dict[str, Any]:
    return {
        "task": job.task,
        "args": _args(job),
        "queue": job.queue,
        "priority": job.priority,
        "run_at": job.run_at,
        "now": now,
        "run_key": job.run_key,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
        "tags": list(job.tags),
        "meta": Jsonb(job.meta),
        "expires_at": job.expires_at,
    }


# A task's (queue, priority, max_attempts) as pgsched.task_defaults resolves them, by task name.
_Defaults = Mapping[str, tuple[str, int, int]]


def _unresolved(jobs: Sequence[NewJob]) -> list[str]:
    """Task names of jobs that leave a default out: a bulk insert resolves them in one query first,
    so the insert trigger (one registry look-up per row) never fires for it."""
    return sorted({j.task for j in jobs if j.queue is None or j.priority is None or j.max_attempts is None})


def _resolved(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, int, int]]:
    return {r["name"]: (r["queue"], r["priority"], r["max_attempts"]) for r in rows}


def _filled(job: NewJob, defaults: _Defaults) -> tuple[str | None, int | None, int | None]:
    if job.queue is not None and job.priority is not None and job.max_attempts is not None:
        return job.queue, job.priority, job.max_attempts
    queue, priority, attempts = defaults[job.task]
    return (
        queue if job.queue is None else job.queue,
        priority if job.priority is None else job.priority,
        attempts if job.max_attempts is None else job.max_attempts,
    )


def _keyed_params(ids: Sequence[int], jobs: Sequence[NewJob], defaults: _Defaults) -> dict[str, Any]:
    filled = [_filled(j, defaults) for j in jobs]
    return {
        "ids": list(ids),
        "tasks": [j.task for j in jobs],
        "args": [_args(j) for j in jobs],
        "queues": [f[0] for f in filled],
        "priorities": [f[1] for f in filled],
        "run_ats": [j.run_at for j in jobs],
        "run_keys": [j.run_key for j in jobs],
        "max_attempts": [f[2] for f in filled],
        "timeouts": [j.timeout for j in jobs],
        "concurrency_keys": [j.concurrency_key for j in jobs],
        "concurrency_limits": [j.concurrency_limit for j in jobs],
        "tags": [Jsonb(list(j.tags)) for j in jobs],
        "metas": [Jsonb(j.meta) for j in jobs],
        "expires_ats": [j.expires_at for j in jobs],
    }


def _copy_shape(jobs: Sequence[NewJob]) -> tuple[Any, list[str], bool]:
    """The COPY statement, its column types, and whether rows carry the label columns."""
    if any(j.tags or j.meta or j.expires_at for j in jobs):
        return query("job_copy_labelled"), _COPY_TYPES + _LABEL_TYPES, True
    return query("job_copy"), _COPY_TYPES, False


def _copy_row(job_id: int, job: NewJob, now: datetime, defaults: _Defaults, labelled: bool) -> tuple[Any, ...]:
    queue, priority, attempts = _filled(job, defaults)
    row = (
        job_id,
        job.task,
        _args(job),
        queue,
        priority,
        job.run_at or now,
        attempts,
        job.timeout,
        job.concurrency_key,
        job.concurrency_limit,
    )
    return (*row, list(job.tags), Jsonb(job.meta), job.expires_at) if labelled else row


def _ids_in_order(ids: Sequence[int], jobs: Sequence[NewJob], inserted: set[int], by_key: dict[str, int]) -> list[int]:
    out = []
    for job_id, job in zip(ids, jobs, strict=True):
        if job_id in inserted:
            out.append(job_id)
        elif job.run_key is not None and job.run_key in by_key:
            out.append(by_key[job.run_key])
        else:  # the row holding the key vanished between insert and lookup
            raise InvalidStateError(f"run_key {job.run_key!r} conflicted but no job holds it; retry the enqueue")
    return out


def _run_keys(jobs: Sequence[NewJob]) -> list[str]:
    return list(dict.fromkeys(j.run_key for j in jobs if j.run_key is not None))


def _still_held(hints: Mapping[str, int], rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The cache's hints that PostgreSQL confirms: the job with that id exists and holds that run key."""
    held = {(r["id"], r["run_key"]) for r in rows}
    return {key: job_id for key, job_id in hints.items() if (job_id, key) in held}


def _merged(jobs: Sequence[NewJob], known: Mapping[str, int], fresh_ids: Sequence[int]) -> list[int]:
    """Ids in the order of ``jobs``: a verified cache hit's id, else the next id of the fresh insert."""
    fresh = iter(fresh_ids)
    return [known[j.run_key] if j.run_key is not None and j.run_key in known else next(fresh) for j in jobs]


def _learned(fresh: Sequence[NewJob], ids: Sequence[int]) -> dict[str, int]:
    return {j.run_key: job_id for j, job_id in zip(fresh, ids, strict=True) if j.run_key is not None}


def _list_query(tags: Sequence[str] | None, meta: Mapping[str, Any] | None) -> Any:
    """With a tag or meta filter, the list read through the partial index of labelled jobs."""
    return query("job_list_labelled") if tags or meta else query("job_list")


def _list_params(
    state: JobState | str | None,
    queue: str | None,
    task: str | None,
    before_id: int | None,
    limit: int,
    tags: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "state": str(state) if state else None,
        "queue": queue,
        "task": task,
        "before_id": before_id,
        "limit": limit,
        "tags": list(tags or ()),
        "meta": Jsonb(dict(meta or {})),
    }


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
                row = cur.execute(query("job_insert"), _insert_params(job, self._clock.db_now())).fetchone()
                if row is not None:
                    return Inserted(Job.from_row(row), bool(row["created"]))
            raise InvalidStateError(f"run_key {job.run_key!r} is contended; retry the enqueue")

    def job_insert_many(self, jobs: Sequence[NewJob], *, conn: psycopg.Connection[Any] | None = None) -> list[int]:
        """Insert jobs in one COPY (or one keyed INSERT); ids in order. Run keys that the cache
        names, and PostgreSQL confirms, are answered without inserting (not in a caller's transaction)."""
        keys = _run_keys(jobs)
        if conn is not None or not keys or not self._cache.enabled:
            return self._insert_many(jobs, conn) if jobs else []
        scope = self._cache_scope()
        known = self._verified(scope, self._cache.get_many(scope, keys))
        fresh = [j for j in jobs if j.run_key not in known]
        ids = self._insert_many(fresh, None) if fresh else []
        self._cache.put_many(scope, _learned(fresh, ids))
        return _merged(jobs, known, ids)

    def _verified(self, scope: str, hints: Mapping[str, int]) -> dict[str, int]:
        if not hints:
            return {}
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query("job_run_keys_by_id"), {"ids": list(hints.values())}).fetchall()
        known = _still_held(hints, rows)
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
            row = cur.execute(query("job_ids_reserve"), {"n": len(jobs)}).fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            names = _unresolved(jobs)
            defaults = _resolved(cur.execute(query("task_defaults_many"), {"names": names}).fetchall()) if names else {}
            if any(j.run_key is not None for j in jobs):
                keyed = _keyed_params(ids, jobs, defaults)
                inserted = {r["id"] for r in cur.execute(query("job_insert_many_keyed"), keyed)}
                keys = [j.run_key for j in jobs if j.run_key is not None]
                rows = cur.execute(query("job_ids_by_run_key"), {"run_keys": keys}).fetchall()
                return _ids_in_order(ids, jobs, inserted, {r["run_key"]: r["id"] for r in rows})
            now = self._clock.now()
            statement, types, labelled = _copy_shape(jobs)
            with cur.copy(statement) as copy:
                copy.set_types(types)
                for job_id, job in zip(ids, jobs, strict=True):
                    copy.write_row(_copy_row(job_id, job, now, defaults, labelled))
            return ids

    def job_get(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job | None:
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("job_get"), {"id": job_id}).fetchone()
            return Job.from_row(row) if row else None

    def job_cancel(self, job_id: int) -> JobState:
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("job_cancel"), {"id": job_id}).fetchone()
            assert row is not None
            return JobState(row["state"])

    def job_retry(self, job_id: int) -> None:
        with self._conn(None) as c:
            c.execute(query("job_retry"), {"id": job_id})


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
                await cur.execute(query("job_insert"), _insert_params(job, self._clock.db_now()))
                row = await cur.fetchone()
                if row is not None:
                    return Inserted(Job.from_row(row), bool(row["created"]))
            raise InvalidStateError(f"run_key {job.run_key!r} is contended; retry the enqueue")

    async def job_insert_many(
        self, jobs: Sequence[NewJob], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[int]:
        """The async twin of ``JobStore.job_insert_many``."""
        keys = _run_keys(jobs)
        if conn is not None or not keys or not self._cache.enabled:
            return await self._insert_many(jobs, conn) if jobs else []
        scope = await self._cache_scope()
        known = await self._verified(scope, await self._cache.get_many_async(scope, keys))
        fresh = [j for j in jobs if j.run_key not in known]
        ids = await self._insert_many(fresh, None) if fresh else []
        await self._cache.put_many_async(scope, _learned(fresh, ids))
        return _merged(jobs, known, ids)

    async def _verified(self, scope: str, hints: Mapping[str, int]) -> dict[str, int]:
        if not hints:
            return {}
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_run_keys_by_id"), {"ids": list(hints.values())})
            known = _still_held(hints, await cur.fetchall())
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
            await cur.execute(query("job_ids_reserve"), {"n": len(jobs)})
            row = await cur.fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            defaults: dict[str, tuple[str, int, int]] = {}
            if names := _unresolved(jobs):
                await cur.execute(query("task_defaults_many"), {"names": names})
                defaults = _resolved(await cur.fetchall())
            if any(j.run_key is not None for j in jobs):
                await cur.execute(query("job_insert_many_keyed"), _keyed_params(ids, jobs, defaults))
                inserted = {r["id"] for r in await cur.fetchall()}
                keys = [j.run_key for j in jobs if j.run_key is not None]
                await cur.execute(query("job_ids_by_run_key"), {"run_keys": keys})
                return _ids_in_order(ids, jobs, inserted, {r["run_key"]: r["id"] for r in await cur.fetchall()})
            now = self._clock.now()
            statement, types, labelled = _copy_shape(jobs)
            async with cur.copy(statement) as copy:
                copy.set_types(types)
                for job_id, job in zip(ids, jobs, strict=True):
                    await copy.write_row(_copy_row(job_id, job, now, defaults, labelled))
            return ids

    async def job_get(self, job_id: int) -> Job | None:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_get"), {"id": job_id})
            row = await cur.fetchone()
            return Job.from_row(row) if row else None

    async def job_list(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        tags: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Newest first; ``tags``: jobs holding every one; ``meta``: jobs whose meta contains it."""
        params = _list_params(state, queue, task, before_id, limit, tags, meta)
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(_list_query(tags, meta), params)
            return [Job.from_row(r) for r in await cur.fetchall()]

    async def job_cancel(self, job_id: int) -> JobState:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_cancel"), {"id": job_id})
            row = await cur.fetchone()
            assert row is not None
            return JobState(row["state"])

    async def job_retry(self, job_id: int) -> None:
        async with self._conn(None) as c:
            await c.execute(query("job_retry"), {"id": job_id})

    async def job_delete(self, job_id: int) -> bool:
        """Delete a finished job, and its run key from the dedupe cache (verification would catch it anyway)."""
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_delete"), {"id": job_id})
            row = await cur.fetchone()
        if row is not None and row["run_key"] is not None and self._cache.enabled:
            await self._cache.forget_async(await self._cache_scope(), [row["run_key"]])
        return row is not None

    async def queue_configure(self, queue: str, changes: QueueChanges) -> dict[str, Any]:
        """Apply flow-control changes to a queue (creating its settings row); returns its settings."""
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("queue_configure"), changes.params(validate_queue(queue)))
            row = await cur.fetchone()
            assert row is not None
            return dict(row)

    async def queue_stats_list(self) -> list[dict[str, Any]]:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("queue_stats_list"))
            return list(await cur.fetchall())

    async def job_update(self, job_id: int, changes: JobChanges) -> Job:
        """Change a queued job; ``InvalidStateError`` once it started or finished, ``JobNotFound`` if missing."""
        params = {
            "id": job_id,
            "run_at": changes.run_at,
            "priority": changes.priority,
            "args": None if changes.args is None else Jsonb(changes.args),
            "queue": changes.queue,
        }
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_update"), params)
            row = await cur.fetchone()
            if row is not None:
                return Job.from_row(row)
            await cur.execute(query("job_state_get"), {"id": job_id})
            found = await cur.fetchone()
        if found is None:
            raise JobNotFound(job_id)
        raise InvalidStateError(f"job {job_id} is {found['state']}; only a queued job can be changed")

    async def dead_retry_many(self, *, queue: str | None = None, task: str | None = None) -> list[int]:
        """Queue every dead job (of one queue / task) to run now; returns their ids."""
        params = {"queue": queue, "task": task, "now": self._clock.db_now()}
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("dead_retry_many"), params)
            return sorted(r["id"] for r in await cur.fetchall())

    async def dead_purge(
        self, *, queue: str | None = None, task: str | None = None, before: datetime | None = None
    ) -> int:
        """Delete dead jobs (of one queue / task, finished before ``before``); returns how many."""
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("dead_purge"), {"queue": queue, "task": task, "before": before})
            row = await cur.fetchone()
            return int(row["purged"]) if row else 0
