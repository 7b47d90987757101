"""The task registry: ``@app.task`` turns a function into a ``Task`` that can enqueue itself.

A leaf module: it knows nothing of the database; enqueueing goes through the ``Enqueuer``
protocol that the app hands in.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pgsched.errors import TaskNotFound, ValidationError
from pgsched.hooks import Hooks
from pgsched.job import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    check_range,
    validate_queue,
    validate_task_name,
)
from pgsched.retry import RetryPolicy
from pgsched.workflow import Step

__all__ = [
    "DEFAULT_MAX_SNOOZES",
    "ENQUEUE_OPTIONS",
    "EXECUTORS",
    "Enqueuer",
    "Task",
    "TaskRegistry",
    "publication",
    "resolve_delay",
    "unknown_task_error",
]

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
        "run_key_scope",
        "run_key_period",
        "on_conflict",
        "max_attempts",
        "timeout",
        "conn",
        "concurrency_key",
        "concurrency_limit",
        "tags",
        "meta",
        "expires_at",
        "start_within",
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

    @property
    def description(self) -> str | None:
        """The first line of the function's docstring (published to the task registry)."""
        doc = inspect.getdoc(self.func)
        return doc.strip().splitlines()[0] if doc and doc.strip() else None

    def with_defaults(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with this task's declared queue, attempts and priority where the caller gave none
        (the database applies the same declaration, from the registry, to jobs enqueued elsewhere)."""
        filled = dict(options)
        for key, value in (("queue", self.queue), ("max_attempts", self.max_attempts), ("priority", self.priority)):
            if filled.get(key) is None:
                filled[key] = value
        return filled

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        options = self.with_defaults({k: kwargs.pop(k) for k in list(kwargs) if k in ENQUEUE_OPTIONS})
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
        check_range("max_attempts", task.max_attempts, 1, MAX_ATTEMPTS_MAX)  # the rules of the tasks table
        check_range("priority", task.priority, PRIORITY_MIN, PRIORITY_MAX)
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


def publication(served: Iterable[Task]) -> dict[str, list[Any]]:
    """What a worker publishes to ``pgsched.tasks``: one array per column (the ``task_publish`` parameters);
    the first task of a name wins, as the worker's own look-up does."""
    by_name: dict[str, Task] = {}
    for task in served:
        by_name.setdefault(task.name, task)
    tasks = [by_name[name] for name in sorted(by_name)]
    return {
        "names": [t.name for t in tasks],
        "queues": [t.queue for t in tasks],
        "priorities": [t.priority for t in tasks],
        "max_attempts": [t.max_attempts for t in tasks],
        "timeouts": [None if t.timeout is None else timedelta(seconds=t.timeout) for t in tasks],
        "retries": [_retry_words(t.retry) for t in tasks],
        "descriptions": [t.description for t in tasks],
    }


def _retry_words(policy: RetryPolicy) -> str:
    return f"exponential from {policy.base_seconds:g}s, capped at {policy.max_seconds:g}s, jitter {policy.jitter:g}"


def unknown_task_error(name: str, known: Iterable[str], *, override: str, field_name: str = "task") -> ValidationError:
    """The error for a task name no worker serves, with close names from ``known`` and how to override."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ValidationError(field_name, f"no worker serves task {name!r}{hint}; {override} to enqueue it anyway")


def resolve_delay(options: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Turn the enqueue options ``delay`` into ``run_at`` and ``start_within`` into ``expires_at``
    (counted from ``run_at``, else now); each a number of seconds or a timedelta."""
    delay = _seconds(options.pop("delay", None), "delay")
    if delay is not None:
        if options.get("run_at") is not None:
            raise ValidationError("delay", "give run_at or delay, not both")
        options["run_at"] = now + delay
    within = _seconds(options.pop("start_within", None), "start_within")
    if within is not None:
        if options.get("expires_at") is not None:
            raise ValidationError("start_within", "give expires_at or start_within, not both")
        if within <= timedelta(0):
            raise ValidationError("start_within", "must be positive")
        start = options.get("run_at")
        options["expires_at"] = (start if isinstance(start, datetime) else now) + within
    return options


def _seconds(value: object, field_name: str) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise ValidationError(field_name, "must be a number of seconds or a timedelta")
