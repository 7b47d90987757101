"""Lifecycle hooks and task middleware: ``@app.on("job_started")`` and ``@app.middleware``.

A leaf module: no I/O of its own. Event listeners are plain synchronous callables (like signals):
an exception in one is logged and never fails, loses or delays the job's own outcome. Middleware
wraps each attempt's execution (a Sentry scope, a DB session) and is part of it: an exception that
escapes a middleware is the attempt's failure. With nothing registered each hook point costs one
attribute test. A ``Tracer`` (``pgsched.contrib.otel``) wraps enqueues and attempts in spans; the
trace context travels inside the job.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from pgsched.context import JobContext, current_job
from pgsched.errors import ValidationError
from pgsched.job import NewJob

__all__ = [
    "Attempt",
    "EVENTS",
    "EnqueueSpan",
    "EventName",
    "Hooks",
    "JobEvent",
    "Listener",
    "Middleware",
    "Next",
    "Tracer",
]

log = logging.getLogger(__name__)

EventName = Literal["enqueued", "job_dead", "job_failed", "job_started", "job_succeeded"]
EVENTS: frozenset[str] = frozenset(get_args(EventName))

Next = Callable[[], Awaitable[Any]]
# Either ``async def mw(job, call_next): return await call_next()`` or a one-argument factory of an
# async context manager (``@contextlib.asynccontextmanager async def mw(job): yield``).
Middleware = Callable[[JobContext, Next], Awaitable[Any]] | Callable[[JobContext], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a listener is told. ``error`` is set for ``job_failed``/``job_dead``; ``worker_id`` for ``job_started``."""

    event: EventName
    job_id: int
    task: str
    queue: str
    attempt: int
    error: str | None = None
    worker_id: int | None = None


Listener = Callable[[JobEvent], object]


class Attempt(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def task(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...


class _Ended(Protocol):
    @property
    def outcome(self) -> str: ...
    @property
    def error(self) -> dict[str, Any] | None: ...


class _Enqueued(Protocol):
    @property
    def created(self) -> bool: ...
    @property
    def job(self) -> Any: ...


class EnqueueSpan(Protocol):
    """An enqueue in progress: ``jobs`` carry the span's trace context; ``inserted`` names the ids they got."""

    @property
    def jobs(self) -> Sequence[NewJob]: ...
    def inserted(self, ids: Sequence[int]) -> None: ...


class Tracer(Protocol):
    """Spans around enqueues and attempts (``pgsched.contrib.otel.OtelTracer``)."""

    def enqueue(
        self, jobs: Sequence[NewJob], *, parent: Mapping[str, str] | None = None
    ) -> AbstractContextManager[EnqueueSpan]:
        """A span around inserting ``jobs``: a child of ``parent`` (incoming headers) or of the current span."""
        ...

    def claimed(self, ids: Sequence[int], traces: Mapping[int, Mapping[str, str]], claimed_at: float) -> None:
        """A worker claimed these jobs at ``claimed_at`` (wall clock); ``traces``: the contexts they carry."""
        ...

    def run(self, job: Attempt, call: Next) -> Awaitable[Any]:
        """Run an attempt (``call``, not yet started) inside its spans, continuing the trace its job carries."""
        ...


# The state a finished attempt left its job in -> the event it means (a cancel has none).
_END_EVENTS: dict[tuple[str, str], EventName] = {
    ("snoozed", "dead"): "job_dead",
    ("succeeded", "succeeded"): "job_succeeded",
    ("failed", "queued"): "job_failed",
    ("failed", "dead"): "job_dead",
}


class Hooks:
    """The listeners and middleware of one app; the worker and the client call the hook points."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {name: [] for name in EVENTS}
        self._starts = self._listeners["job_started"]  # read once per job: one attribute, no lookup
        self._middleware: list[tuple[Middleware, bool]] = []
        self.ends = False  # any job_succeeded/job_failed/job_dead listener
        self.wraps = False  # any middleware or a tracer
        self.tracer: Tracer | None = None

    # ---------------------------------------------------------------- registration
    def on(self, event: EventName, listener: Listener) -> Listener:
        if event not in EVENTS:
            raise ValidationError("event", f"unknown event {event!r}; one of {', '.join(sorted(EVENTS))}")
        self._listeners[event].append(listener)
        self._refresh()
        return listener

    def off(self, event: EventName, listener: Listener) -> None:
        """Remove a listener added with ``on`` (a no-op when it is not there)."""
        if listener in self._listeners.get(event, []):
            self._listeners[event].remove(listener)
        self._refresh()

    def add_middleware(self, middleware: Middleware) -> Middleware:
        """Add a middleware; the first added is the outermost."""
        params = [
            p
            for p in inspect.signature(middleware).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) not in (1, 2):
            raise ValidationError("middleware", "takes (job, call_next) or (job) returning an async context manager")
        self._middleware.append((middleware, len(params) == 2))
        self._refresh()
        return middleware

    def set_tracer(self, tracer: Tracer | None) -> None:
        """Trace enqueues and attempts with ``tracer`` (None: stop tracing)."""
        self.tracer = tracer
        self._refresh()

    def _refresh(self) -> None:
        self.ends = any(self._listeners[name] for name in ("job_succeeded", "job_failed", "job_dead"))
        self.wraps = bool(self._middleware) or self.tracer is not None

    # ---------------------------------------------------------------- hook points
    def started(self, job: Attempt) -> None:
        """The executor is about to run an attempt (the job context is set)."""
        if self._starts:
            worker_id = current_job().worker_id
            self._emit(JobEvent("job_started", job.id, job.task, job.queue, job.attempt, worker_id=worker_id))

    def ended(self, batch: Iterable[tuple[Attempt, _Ended]], states: Mapping[int, str]) -> None:
        """A batch of attempts was written; ``states`` holds the accepted ones (id -> the job's new state)."""
        if not self.ends:
            return
        for job, finished in batch:
            event = _END_EVENTS.get((str(finished.outcome), states.get(job.id, "")))
            if event is not None:
                error = (finished.error or {}).get("error")
                self._emit(JobEvent(event, job.id, job.task, job.queue, job.attempt, error=error))

    def committed(self, job: Attempt) -> None:
        """A transactional attempt committed its own success."""
        if self.ends:
            self._emit(JobEvent("job_succeeded", job.id, job.task, job.queue, job.attempt))

    def enqueued(self, inserted: _Enqueued) -> int:
        """A job was inserted (inside the caller's transaction when one was given); returns its id."""
        job = inserted.job
        if inserted.created and self._listeners["enqueued"]:
            self._emit(JobEvent("enqueued", job.id, job.task, job.queue, job.attempt))
        return int(job.id)

    def around(self, call: Next, attempt: Attempt) -> Awaitable[Any]:
        """Run ``call`` (an attempt's execution, not yet started) inside the tracer's spans and every middleware."""
        if self.tracer is not None:
            inner = call if not self._middleware else functools.partial(self._chain, current_job(), call, 0)
            return self.tracer.run(attempt, inner)
        if not self._middleware:
            return call()
        return self._chain(current_job(), call, 0)

    async def _chain(self, job: JobContext, call: Next, index: int) -> Any:
        if index == len(self._middleware):
            return await call()
        middleware, takes_next = self._middleware[index]
        if takes_next:
            wrapped: Awaitable[Any] = middleware(job, lambda: self._chain(job, call, index + 1))  # type: ignore[call-arg,assignment]
            return await wrapped
        context: AbstractAsyncContextManager[Any] = middleware(job)  # type: ignore[call-arg,assignment]
        async with context:
            return await self._chain(job, call, index + 1)

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners[event.event]):
            try:
                listener(event)
            except Exception:
                log.exception(
                    "hook failed",
                    extra={"event": "hook_failed", "hook": event.event, "job_id": event.job_id, "task": event.task},
                )
