"""Client: enqueue and look up jobs for application code, sync and async.

Service layer: validates through ``NewJob``, delegates to the job stores (which hold the one
enqueue-with-cache path). Owns the connection pools and stores it opens lazily, and closes them
in ``close``/``aclose``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.config import Settings
from pgsched.dedupe import DedupeCache, NullCache
from pgsched.errors import ValidationError
from pgsched.hooks import Hooks
from pgsched.job import NewJob
from pgsched.job_input import ItemsShape, build_job, copy_job_from_mapping, items_shape, new_job_from_mapping
from pgsched.job_row import Job
from pgsched.result_store import ResultStore
from pgsched.store import Added, AsyncJobStore, Inserted, JobStore
from pgsched.task_store import TaskStore
from pgsched.workflow import Started, Workflow
from pgsched.workflow_store import AsyncWorkflowStore, WorkflowStore

__all__ = ["Client", "dedupe_cache_for"]

# What a builder of items makes: a NewJob, or for a COPY a NewJob or PlainJob.
_Built = TypeVar("_Built")


class Client:
    """Enqueue and read jobs. Sync methods use a sync pool, async ones an async pool; both open on first use."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, hooks: Hooks | None = None) -> None:
        self._settings = settings
        self._hooks = hooks or Hooks()
        self._clock = clock or SystemClock()
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._apool_lock = asyncio.Lock()
        self._pool_lock = threading.Lock()  # threads sharing one client open one pool, not one each
        self._cache = dedupe_cache_for(settings)
        self._results: ResultStore | None = None
        self._sync_store: JobStore | None = None
        self._async_store: AsyncJobStore | None = None

    # ---------------------------------------------------------------- plumbing
    def _store(self) -> JobStore:
        if self._sync_store is None:
            with self._pool_lock:
                if self._sync_store is None:
                    dsn = self._settings.require_dsn()
                    pool = db.sync_pool(dsn, "client", min_size=0, max_size=4, check_idle=True)
                    pool.open()
                    self._pool = pool
                    self._sync_store = JobStore(pool, clock=self._clock, cache=self._cache)
        return self._sync_store

    def _unpooled_store(self) -> JobStore:
        """A store for calls that bring their own connection: no pool is opened."""
        return JobStore(_NO_POOL, clock=self._clock)

    def _unpooled_astore(self) -> AsyncJobStore:
        return AsyncJobStore(_NO_APOOL, clock=self._clock)

    async def _astore(self) -> AsyncJobStore:
        if self._async_store is None:
            async with self._apool_lock:
                if self._async_store is None:
                    dsn = self._settings.require_dsn()
                    pool = db.async_pool(dsn, "client", min_size=0, max_size=4, check_idle=True)
                    await pool.open()
                    self._apool = pool
                    self._async_store = AsyncJobStore(pool, clock=self._clock, cache=self._cache)
        return self._async_store

    def build(self, task: str, args: Mapping[str, Any] | None = None, **options: Any) -> NewJob:
        return build_job(task, args, options, clock=self._clock, max_payload_bytes=self._settings.max_payload_bytes)

    # ---------------------------------------------------------------- sync
    def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        job = self.build(task, args, **options)
        tracer = self._hooks.tracer
        if tracer is None:
            return self._hooks.enqueued(self._add(job, conn))
        with tracer.enqueue([job]) as span:
            added = self._add(span.jobs[0], conn)
            span.inserted([added.job.id])
        return self._hooks.enqueued(added)

    def _add(self, job: NewJob, conn: psycopg.Connection[Any] | None) -> Added | Inserted:
        store = self._unpooled_store() if conn is not None else self._store()
        return store.job_add(job, conn=conn)

    def insert(self, job: NewJob, *, conn: psycopg.Connection[Any] | None = None) -> Inserted:
        store = self._unpooled_store() if conn is not None else self._store()
        return store.job_insert(job, conn=conn)

    def enqueue_many(
        self, items: Iterable[Mapping[str, Any]], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        items = list(items)
        shape = self._streamable(items, conn)
        if shape is None:
            return self.insert_many(self._build_many(items), conn=conn)
        return self._store().job_copy(
            self._built(items, copy_job_from_mapping),
            count=len(items),
            names=list(shape.names),
            labelled=shape.labelled,
        )

    def insert_many(self, jobs: Sequence[NewJob], *, conn: psycopg.Connection[Any] | None = None) -> list[int]:
        """Already validated jobs (the CLI's --from-file); ids in order."""
        store = self._unpooled_store() if conn is not None else self._store()
        tracer = self._hooks.tracer
        if tracer is None:
            return store.job_insert_many(jobs, conn=conn)
        with tracer.enqueue(jobs) as span:
            ids = store.job_insert_many(span.jobs, conn=conn)
            span.inserted(ids)
        return ids

    def get_job(self, job_id: int) -> Job | None:
        return self._store().job_get(job_id)

    def require_known_tasks(
        self, names: Sequence[str], *, field: str = "task", override: str = "--allow-unknown"
    ) -> None:
        """``ValidationError`` (with close names) for the first task name no live worker has registered."""
        self._store()
        assert self._pool is not None
        unserved = TaskStore(self._pool).task_names_unserved(names)
        if unserved is not None:
            raise unserved.error(override=f"pass {override}", field_name=field)

    def result(self, job_id: int, *, timeout: float = 30.0, recheck: float = 1.0) -> Any:
        """Wait for the job to end and return its result (every wait of this client shares one listener)."""
        return self._result_store().result_wait(job_id, timeout=timeout, recheck=recheck)

    def start_workflow(self, workflow: Workflow, *, conn: psycopg.Connection[Any] | None = None) -> Started:
        """Create every step and edge of ``workflow`` in one transaction (the caller's, with ``conn``)."""
        jobs = self._build_steps(workflow)
        return self.workflow_store(conn).workflow_insert(workflow.name, workflow.kind, jobs, workflow.nodes, conn=conn)

    def workflow_store(self, conn: psycopg.Connection[Any] | None = None) -> WorkflowStore:
        if conn is not None:
            return WorkflowStore(None)
        self._store()
        return WorkflowStore(self._pool)

    def _build_steps(self, workflow: Workflow) -> list[NewJob]:
        if not workflow.nodes:
            raise ValidationError("steps", "a workflow needs at least one step")
        jobs = []
        for index, node in enumerate(workflow.nodes):
            try:
                jobs.append(self.build(node.step.task, node.step.args, **node.step.options))
            except ValidationError as exc:
                raise ValidationError(f"steps[{index}].{exc.field}", exc.message) from None
        return jobs

    # ---------------------------------------------------------------- async
    async def start_workflow_async(
        self, workflow: Workflow, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Started:
        jobs = self._build_steps(workflow)
        store = await self.workflow_store_async(conn)
        return await store.workflow_insert(workflow.name, workflow.kind, jobs, workflow.nodes, conn=conn)

    async def workflow_store_async(self, conn: psycopg.AsyncConnection[Any] | None = None) -> AsyncWorkflowStore:
        if conn is not None:
            return AsyncWorkflowStore(None)
        await self._astore()
        return AsyncWorkflowStore(self._apool)

    async def enqueue_async(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> int:
        job = self.build(task, args, **options)
        tracer = self._hooks.tracer
        if tracer is None:
            return self._hooks.enqueued(await self._add_async(job, conn))
        with tracer.enqueue([job]) as span:
            added = await self._add_async(span.jobs[0], conn)
            span.inserted([added.job.id])
        return self._hooks.enqueued(added)

    async def _add_async(self, job: NewJob, conn: psycopg.AsyncConnection[Any] | None) -> Added | Inserted:
        store = self._unpooled_astore() if conn is not None else await self._astore()
        return await store.job_add(job, conn=conn)

    async def insert_async(self, job: NewJob, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Inserted:
        store = self._unpooled_astore() if conn is not None else await self._astore()
        return await store.job_insert(job, conn=conn)

    def dedupe_status(self) -> dict[str, Any]:
        """State of the run-key cache, for `pgsched doctor` and /health."""
        return self._cache.status()

    async def enqueue_many_async(
        self, items: Iterable[Mapping[str, Any]], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[int]:
        items = list(items)
        shape = self._streamable(items, conn)
        if shape is not None:
            return await (await self._astore()).job_copy(
                self._built(items, copy_job_from_mapping),
                count=len(items),
                names=list(shape.names),
                labelled=shape.labelled,
            )
        jobs = self._build_many(items)
        store = self._unpooled_astore() if conn is not None else await self._astore()
        tracer = self._hooks.tracer
        if tracer is None:
            return await store.job_insert_many(jobs, conn=conn)
        with tracer.enqueue(jobs) as span:
            ids = await store.job_insert_many(span.jobs, conn=conn)
            span.inserted(ids)
        return ids

    async def get_job_async(self, job_id: int) -> Job | None:
        return await (await self._astore()).job_get(job_id)

    async def result_async(
        self,
        job_id: int,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - mirrors result()
        recheck: float = 1.0,
    ) -> Any:
        return await self._result_store().result_wait_async(job_id, timeout=timeout, recheck=recheck)

    def _streamable(self, items: Sequence[Mapping[str, Any]], conn: object) -> ItemsShape | None:
        """The shape of items whose jobs can be built while their COPY runs: not in a caller's transaction (a bad
        item ends the COPY with an error, which would abort it), not under a tracer (its span takes the built jobs),
        no run key (the keyed insert)."""
        if conn is not None or self._hooks.tracer is not None:
            return None
        return items_shape(items)

    def _build_many(self, items: Iterable[Mapping[str, Any]]) -> list[NewJob]:
        return list(self._built(items, new_job_from_mapping))

    def _built(self, items: Iterable[Mapping[str, Any]], build: Callable[..., _Built]) -> Iterator[_Built]:
        """Each item's job as ``build`` makes it (``new_job_from_mapping``, or ``copy_job_from_mapping`` for a
        COPY), as it is built; a bad item raises a ``ValidationError`` naming ``items[i].field``."""
        limit = self._settings.max_payload_bytes
        for index, item in enumerate(items):
            try:
                yield build(item, clock=self._clock, max_payload_bytes=limit)
            except ValidationError as exc:
                raise ValidationError(f"items[{index}].{exc.field}", exc.message) from None

    def _result_store(self) -> ResultStore:
        if self._results is None:
            # Its LISTEN session and the waiter rows naming that session belong on a session connection.
            self._results = ResultStore(self._settings.session_dsn or self._settings.require_dsn())
        return self._results

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            self._sync_store = None
        if self._results is not None:
            self._results.close()
            self._results = None
        self._cache.close()

    async def aclose(self) -> None:
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
            self._async_store = None
        if self._results is not None:
            await self._results.aclose()
            self._results = None
        await self._cache.aclose()
        self.close()


def dedupe_cache_for(settings: Settings) -> DedupeCache:
    """The run-key cache the settings ask for: Redis with PGSCHED_REDIS_URL, else none."""
    if not settings.redis_url:
        return NullCache()
    from pgsched.contrib.redis_dedupe import RedisDedupeCache

    return RedisDedupeCache(settings)


class _NoPool:
    """Stands in for a pool when the caller brings the connection; any use is a bug."""

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no pool: this call must be given a connection")


_NO_POOL: Any = _NoPool()
_NO_APOOL: Any = _NoPool()
