"""eager: run a task inline when it is enqueued, for unit tests of application code without a worker.

It bypasses the queue entirely: no row is written, no database is needed, and ``run_at``, run keys,
retries, timeouts, hooks and middleware do not apply. The arguments are validated and JSON
round-tripped as a real enqueue would, and the task runs with a job context (``current_job()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pgsched.app import Pgsched
from pgsched.client import Client
from pgsched.context import JobContext, reset_current_job, set_current_job
from pgsched.errors import ConfigurationError
from pgsched.testing.outcome import Outcome

__all__ = ["EagerClient", "eager"]


@contextlib.contextmanager
def eager(app: Pgsched, *, propagate: bool = True) -> Iterator[EagerClient]:
    """Within the block, ``app.enqueue`` and ``task.enqueue`` (sync and async) run the task at once and
    return a local id (1, 2, ...); the yielded client's ``outcomes`` lists what ran, in the order it ended.
    With ``propagate`` (the default) a task's exception is raised from the enqueue call, after it is recorded."""
    client = EagerClient(app, propagate=propagate)
    saved = app.client, {task: task.enqueuer for task in app.tasks}
    app.client = client
    for task in app.tasks:
        task.enqueuer = client
    try:
        yield client
    finally:
        app.client = saved[0]
        for task, enqueuer in saved[1].items():
            task.enqueuer = enqueuer


class EagerClient(Client):
    """A client whose enqueue runs the job inline instead of inserting it."""

    def __init__(self, app: Pgsched, *, propagate: bool) -> None:
        super().__init__(app.settings)
        self._app = app
        self._propagate = propagate
        self._ids = itertools.count(1)
        self.outcomes: list[Outcome] = []

    def enqueue(self, task: str, args: Mapping[str, Any] | None = None, *, conn: Any = None, **options: Any) -> int:
        func, args, context = self._prepare(task, args, options)
        if asyncio.iscoroutinefunction(func):
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop()
                raise ConfigurationError(f"task {task!r} is async: use enqueue_async inside an event loop")
        token = set_current_job(context)
        try:
            result = asyncio.run(func(**args)) if asyncio.iscoroutinefunction(func) else func(**args)
        except Exception as exc:
            return self._record(context, exc=exc)
        finally:
            reset_current_job(token)
        return self._record(context, result)

    async def enqueue_async(
        self, task: str, args: Mapping[str, Any] | None = None, *, conn: Any = None, **options: Any
    ) -> int:
        func, args, context = self._prepare(task, args, options)
        token = set_current_job(context)
        try:
            result = await func(**args) if asyncio.iscoroutinefunction(func) else func(**args)
        except Exception as exc:
            return self._record(context, exc=exc)
        finally:
            reset_current_job(token)
        return self._record(context, result)

    def enqueue_many(self, items: Iterable[Mapping[str, Any]], *, conn: Any = None) -> list[int]:
        return [self.enqueue(item["task"], item.get("args"), **_options(item)) for item in items]

    async def enqueue_many_async(self, items: Iterable[Mapping[str, Any]], *, conn: Any = None) -> list[int]:
        return [await self.enqueue_async(item["task"], item.get("args"), **_options(item)) for item in items]

    def _prepare(
        self, task: str, args: Mapping[str, Any] | None, options: dict[str, Any]
    ) -> tuple[Callable[..., Any], dict[str, Any], JobContext]:
        job = self.build(task, args, **options)  # the real validation: names, sizes, options
        registered = self._app.tasks.get(job.task)
        if registered.transactional:
            raise ConfigurationError(f"task {task!r} is transactional: it needs a database, use pgsched.testing.drain")
        decoded: dict[str, Any] = json.loads(json.dumps(job.args))  # what a worker would receive
        queue = job.queue if job.queue is not None else registered.queue  # the declaration, as the database fills it
        return registered.func, decoded, JobContext(next(self._ids), 1, queue, job.task)

    def _record(self, context: JobContext, result: Any = None, *, exc: Exception | None = None) -> int:
        if exc is None:
            self.outcomes.append(Outcome(context.id, context.task, "succeeded", 1, result))
            return context.id
        self.outcomes.append(Outcome(context.id, context.task, "dead", 1, error=f"{type(exc).__name__}: {exc}"))
        if self._propagate:
            raise exc
        return context.id


def _options(item: Mapping[str, Any]) -> dict[str, Any]:
    # delay_seconds (the REST spelling) is dropped with the rest of the timing: eager runs now.
    return {k: v for k, v in item.items() if k not in {"task", "args", "delay_seconds"}}
