"""Pgsched: the application object. Wiring only: settings, the task registry and the client.

No SQL and no loops here; services (worker, scheduler, API) are built from it elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import psycopg

from pgsched import db
from pgsched.client import Client
from pgsched.clock import Clock
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.hooks import EventName, Hooks, Listener, Middleware, Tracer
from pgsched.job import DEFAULT_MAX_ATTEMPTS
from pgsched.job_row import Job
from pgsched.retry import RetryPolicy
from pgsched.schedule_store import Schedule, ScheduleSpec, ScheduleStore
from pgsched.tasks import DEFAULT_MAX_SNOOZES, Task, TaskRegistry
from pgsched.workflow import Dag, Group, Step, Workflow, batch, chain, group
from pgsched.workflow_store import WorkflowInfo, WorkflowStep

__all__ = ["Pgsched"]


def otel_tracer() -> Tracer:
    """The OpenTelemetry tracer (PGSCHED_OTEL=1); a clear error when the extra is not installed."""
    try:
        from pgsched.contrib.otel import OtelTracer
    except ImportError as exc:
        raise ConfigurationError(
            f"PGSCHED_OTEL is on but OpenTelemetry is missing ({exc}): pip install 'pgsched[otel]'"
        ) from None
    return OtelTracer()


class Pgsched:
    """Holds the tasks of an application and enqueues jobs for them.

    ``Pgsched(dsn)`` or ``Pgsched.from_env()``; then ``@app.task`` and ``app.enqueue``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        settings: Settings | None = None,
        redis_url: str | None = None,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        base = settings or Settings()
        changes: dict[str, Any] = {}
        if dsn is not None:
            changes["dsn"] = dsn
        if redis_url is not None:
            changes["redis_url"] = redis_url
        self.settings = base.with_(**changes) if changes else base
        db.set_prepared_statements(self.settings.prepared_statements)
        self.tasks = TaskRegistry(hooks)
        self.client = Client(self.settings, clock=clock, hooks=self.tasks.hooks)
        if self.settings.otel and self.tasks.hooks.tracer is None:
            self.tasks.hooks.set_tracer(otel_tracer())

    @classmethod
    def from_env(cls, **overrides: Any) -> Pgsched:
        return cls(settings=Settings.from_env(**overrides))

    def with_settings(self, settings: Settings) -> Pgsched:
        """The same tasks against other settings (the CLI's --dsn wins over the app's own)."""
        clone = Pgsched(settings=settings, hooks=self.tasks.hooks)
        for task in self.tasks:
            clone.tasks.register(task)
            task.enqueuer = clone.client
        return clone

    @overload
    def task(self, func: Callable[..., Any]) -> Task: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        priority: int = 0,
        transactional: bool = False,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        max_snoozes: int = DEFAULT_MAX_SNOOZES,
        executor: str = "thread",
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        priority: int = 0,
        transactional: bool = False,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        dont_retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        max_snoozes: int = DEFAULT_MAX_SNOOZES,
        executor: str = "thread",
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task; use bare (``@app.task``) or with options (``@app.task(queue="emails")``).

        ``retry_on`` / ``dont_retry_on``: exception types that may / may not be retried (any other
        exception, or one of these, ends the job ``dead`` at once). ``max_snoozes``: how often the task
        may ``Snooze`` one job. ``executor="process"``: a sync function runs in the worker's process pool
        (``pgsched worker --processes N --max-tasks-per-child N --child-memory-mb M``).
        """

        def register(fn: Callable[..., Any]) -> Task:
            task = Task(
                name=name or fn.__name__,
                func=fn,
                queue=queue,
                max_attempts=max_attempts,
                timeout=timeout,
                retry=retry or RetryPolicy(),
                priority=priority,
                transactional=transactional,
                enqueuer=self.client,
                retry_on=retry_on if isinstance(retry_on, tuple) else (retry_on,),
                dont_retry_on=dont_retry_on if isinstance(dont_retry_on, tuple) else (dont_retry_on,),
                max_snoozes=max_snoozes,
                executor=executor,
            )
            return self.tasks.register(task)

        return register(func) if func is not None else register

    # ---------------------------------------------------------------- hooks
    def on(self, event: EventName) -> Callable[[Listener], Listener]:
        """Register a listener: ``@app.on("job_failed") def alert(event: JobEvent) -> None: ...``.

        Events: ``enqueued``, ``job_started``, ``job_succeeded``, ``job_failed`` (will retry), ``job_dead``.
        Listeners are synchronous and should be quick; an exception in one is logged, never the job's."""
        return lambda listener: self.tasks.hooks.on(event, listener)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every attempt's execution: ``async def mw(job, call_next)`` returning ``await call_next()``,
        or an ``@asynccontextmanager`` taking ``job``. The first registered is the outermost."""
        return self.tasks.hooks.add_middleware(middleware)

    # ---------------------------------------------------------------- delegation
    def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        return self.client.enqueue(task, args, conn=conn, **self._declared(task, options))

    async def enqueue_async(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> int:
        return await self.client.enqueue_async(task, args, conn=conn, **self._declared(task, options))

    def enqueue_many(
        self, items: Iterable[Mapping[str, Any]], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        return self.client.enqueue_many(self._declared_many(items), conn=conn)

    async def enqueue_many_async(
        self, items: Iterable[Mapping[str, Any]], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[int]:
        return await self.client.enqueue_many_async(self._declared_many(items), conn=conn)

    def _declared(self, task: str, options: dict[str, Any]) -> dict[str, Any]:
        """Options with this app's declaration of ``task`` where the caller set nothing (a task this
        app does not know gets the registry's defaults from the database instead)."""
        return self.tasks.get(task).with_defaults(options) if task in self.tasks else options

    def _declared_many(self, items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        declared = {task.name: task for task in self.tasks}
        if not declared:
            return list(items)
        return [
            declared[item["task"]].with_defaults(item)  # a copy: the caller's item is left as it is
            if isinstance(item, Mapping) and isinstance(item.get("task"), str) and item["task"] in declared
            else item
            for item in items
        ]

    def get_job(self, job_id: int) -> Job | None:
        return self.client.get_job(job_id)

    async def get_job_async(self, job_id: int) -> Job | None:
        return await self.client.get_job_async(job_id)

    def result(self, job_id: int, *, timeout: float = 30.0, recheck: float = 1.0) -> Any:
        """Wait up to ``timeout`` seconds (at most 3600) for the job to end; return its result when it
        succeeded. Raises ``JobFailed`` (dead: carries its last error), ``JobCancelled``, ``JobNotFound``
        or ``ResultTimeout`` (a ``TimeoutError``; the job may still finish). Woken by NOTIFY; the row is
        re-read every ``recheck`` seconds anyway."""
        return self.client.result(job_id, timeout=timeout, recheck=recheck)

    async def result_async(
        self,
        job_id: int,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - mirrors result()
        recheck: float = 1.0,
    ) -> Any:
        """``result`` for async code."""
        return await self.client.result_async(job_id, timeout=timeout, recheck=recheck)

    def schedule(
        self,
        name: str,
        cron: str,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        misfire_policy: str = "once",
        misfire_grace_seconds: float = 3600,
        enabled: bool = True,
    ) -> Schedule:
        """Create or replace a cron schedule; the leader fires it exactly once per instant.

        Uses its own event loop: from async code call ``schedule_async`` instead."""
        return asyncio.run(
            self.schedule_async(
                name,
                cron,
                task,
                args,
                timezone=timezone,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                misfire_policy=misfire_policy,
                misfire_grace_seconds=misfire_grace_seconds,
                enabled=enabled,
            )
        )

    async def schedule_async(
        self,
        name: str,
        cron: str,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        misfire_policy: str = "once",
        misfire_grace_seconds: float = 3600,
        enabled: bool = True,
    ) -> Schedule:
        spec = ScheduleSpec.build(
            name,
            cron,
            task,
            dict(args or {}),
            timezone=timezone,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            misfire_policy=misfire_policy,
            misfire_grace_seconds=misfire_grace_seconds,
            enabled=enabled,
        )
        pool = db.async_pool(self.settings.require_dsn(), "client", min_size=1, max_size=1)
        await pool.open()
        try:
            schedule, _ = await ScheduleStore(pool).schedule_upsert(spec)
        finally:
            await pool.close()
        return schedule

    # ---------------------------------------------------------------- workflows
    def chain(self, *steps: Step, name: str = "") -> Workflow:
        """a -> b -> c; ``.enqueue()`` creates it (one transaction) and returns its id and job ids."""
        return chain(*steps, name=name, starter=self.client)

    def group(self, *steps: Step, name: str = "") -> Group:
        """Steps side by side; ``.then(callback.s())`` adds a callback that gets every result."""
        return group(*steps, name=name, starter=self.client)

    def dag(self, name: str = "") -> Dag:
        """A graph: ``a = dag.add(x.s()); dag.add(y.s(), after=[a])``."""
        return Dag(name, starter=self.client)

    def batch(
        self,
        steps: list[Step],
        *,
        on_success: Step | None = None,
        on_failure: Step | None = None,
        on_complete: Step | None = None,
        name: str = "",
    ) -> Workflow:
        """Independent jobs with completion callbacks; progress by id with ``app.workflow(id)``."""
        return batch(
            steps, on_success=on_success, on_failure=on_failure, on_complete=on_complete, name=name, starter=self.client
        )

    def enqueue_after(
        self,
        depends_on: list[int],
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        on_failure: str = "cancel",
        receive: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        """Enqueue a job that waits for existing jobs (``depends_on``): queued once they have all ended
        (``on_failure``: cancel, run or failed), with their results as keyword ``receive`` if given."""
        step = Step(task, dict(args or {}), options).if_dependency_fails(on_failure)  # type: ignore[arg-type]
        if receive is not None:
            step = step.receiving(receive)
        job = self.client.build(task, args, **options)
        store = self.client.workflow_store(conn)
        return store.workflow_add(job, depends_on, on_failure=step.on_failure, results_arg=step.results_arg, conn=conn)

    def workflow(self, workflow_id: int) -> WorkflowInfo | None:
        """A workflow's progress (steps per state) and overall state."""
        return self.client.workflow_store().workflow_get(workflow_id)

    def workflow_steps(self, workflow_id: int) -> list[WorkflowStep]:
        return self.client.workflow_store().workflow_steps_get(workflow_id)

    def cancel_workflow(self, workflow_id: int) -> int:
        """Cancel every unfinished step; returns how many were cancelled or signalled."""
        return self.client.workflow_store().workflow_cancel(workflow_id)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.client.aclose()
