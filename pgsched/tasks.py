"""The task registry: ``@app.task`` turns a function into a ``Task`` that can enqueue itself.

A leaf module: it knows nothing of the database; enqueueing goes through the ``Enqueuer``
protocol that the app hands in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pgsched.errors import TaskNotFound, ValidationError
from pgsched.hooks import Hooks
from pgsched.job import DEFAULT_MAX_ATTEMPTS, validate_queue, validate_task_name
from pgsched.retry import RetryPolicy
from pgsched.workflow import Step

__all__ = ["DEFAULT_MAX_SNOOZES", "ENQUEUE_OPTIONS", "EXECUTORS", "Enqueuer", "Task", "TaskRegistry", "resolve_delay"]

DEFAULT_MAX_SNOOZES = 100
EXECUTORS = ("thread", "process")  # where a sync function runs; async functions always run on the loop

# Keyword names ``Task.enqueue`` keeps for itself; a task whose arguments use one of these
# names is enqueued with ``app.enqueue(name, args)`` instead.
ENQUEUE_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "run_at",
        "delay",
        "run_key",
        "max_attempts",
        "timeout",
        "conn",
        "concurrency_key",
        "concurrency_limit",
    }
)


class Enqueuer(Protocol):
    def enqueue(self, task: str, args: dict[str, Any] | None = None, **options: Any) -> int: ...

    async def enqueue_async(self, task: str, args: dict[str, Any] | None = None, **options: Any) -> int: ...


@dataclass(eq=False)
class Task:
    """A registered task: the function plus its defaults (queue, attempts, timeout, retry policy)."""

    name: str
    func: Callable[..., Any]
    queue: str = "default"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transactional: bool = False
    priority: int = 0
    enqueuer: Enqueuer | None = None
    retry_on: tuple[type[BaseException], ...] = ()  # when given, other exceptions end the job (dead) at once
    dont_retry_on: tuple[type[BaseException], ...] = ()  # these end the job (dead) at once
    max_snoozes: int = DEFAULT_MAX_SNOOZES
    executor: str = "thread"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def retries(self, exc: BaseException) -> bool:
        """Whether a failed attempt that raised ``exc`` may be retried (attempts allowing)."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in process, without a job."""
        return self.func(*args, **kwargs)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in ENQUEUE_OPTIONS}
        options.setdefault("queue", self.queue)
        options.setdefault("max_attempts", self.max_attempts)
        options.setdefault("priority", self.priority)
        if self.timeout is not None:
            options.setdefault("timeout", self.timeout)
        return kwargs, options

    def enqueue(self, **kwargs: Any) -> int:
        """Enqueue a job of this task; task arguments and enqueue options as keywords."""
        args, options = self._split(kwargs)
        return self._require_enqueuer().enqueue(self.name, args, **options)

    async def enqueue_async(self, **kwargs: Any) -> int:
        args, options = self._split(kwargs)
        return await self._require_enqueuer().enqueue_async(self.name, args, **options)

    def s(self, **kwargs: Any) -> Step:
        """A workflow step of this task (``app.chain(a.s(x=1), b.s())``): task arguments and enqueue options."""
        args, options = self._split(dict(kwargs))
        for name in ("conn", "run_key"):
            if options.pop(name, None) is not None:
                raise ValidationError(name, "a workflow step takes no " + name)
        return Step(self.name, args, options)

    def _require_enqueuer(self) -> Enqueuer:
        if self.enqueuer is None:
            raise RuntimeError(f"task {self.name!r} is not attached to a Pgsched app")
        return self.enqueuer


class TaskRegistry:
    """Tasks by name, and the hooks around them (``Hooks``). Built-in tasks register here too."""

    def __init__(self, hooks: Hooks | None = None) -> None:
        self._tasks: dict[str, Task] = {}
        self.hooks = hooks or Hooks()

    def register(self, task: Task) -> Task:
        validate_task_name(task.name, "name")
        validate_queue(task.queue)
        if task.max_attempts < 1:
            raise ValidationError("max_attempts", "must be at least 1")
        if task.max_snoozes < 0:
            raise ValidationError("max_snoozes", "must be zero or more")
        if task.executor not in EXECUTORS:
            raise ValidationError("executor", f"must be one of {', '.join(EXECUTORS)}, got {task.executor!r}")
        if task.executor == "process" and (task.is_async or task.transactional):
            raise ValidationError(
                "executor", "the process executor runs sync functions only (not async, not transactional)"
            )
        for option in ("retry_on", "dont_retry_on"):
            types = getattr(task, option)
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise ValidationError(option, "must be a tuple of exception classes")
        existing = self._tasks.get(task.name)
        if existing is not None and existing.func is not task.func:
            raise ValidationError("name", f"a different function is already registered as task {task.name!r}")
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFound(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        return sorted(self._tasks)


def resolve_delay(options: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Turn an enqueue option ``delay`` (seconds or timedelta) into ``run_at``."""
    delay = options.pop("delay", None)
    if delay is not None:
        if isinstance(delay, int | float) and not isinstance(delay, bool):
            delay = timedelta(seconds=delay)
        if not isinstance(delay, timedelta):
            raise ValidationError("delay", "must be a number of seconds or a timedelta")
        if options.get("run_at") is not None:
            raise ValidationError("delay", "give run_at or delay, not both")
        options["run_at"] = now + delay
    return options
