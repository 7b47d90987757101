"""The job a task function is running, for code that needs it (``current_job()``).

A leaf module: a context variable and a frozen record, no I/O. The worker sets it around each
attempt (sync tasks see it in their thread too); outside a job ``current_job()`` raises.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = ["JobContext", "current_job", "reset_current_job", "set_current_job"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running attempt knows about itself."""

    id: int
    attempt: int
    queue: str
    task: str
    worker_id: int | None = None


_current: ContextVar[JobContext | None] = ContextVar("pgsched_current_job", default=None)


def current_job() -> JobContext:
    """The job being run; ``LookupError`` outside a job (e.g. a task called directly)."""
    job = _current.get()
    if job is None:
        raise LookupError("not running inside a pgsched job")
    return job


def set_current_job(job: JobContext) -> Token[JobContext | None]:
    return _current.set(job)


def reset_current_job(token: Token[JobContext | None]) -> None:
    _current.reset(token)
