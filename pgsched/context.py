"""The job a task function is running, for code that needs it (``current_job()``).

A leaf module: a context variable and a frozen record, no I/O. The worker sets it around each
attempt (sync tasks see it in their thread too); outside a job ``current_job()`` raises.
``progress()`` and ``heartbeat()`` hand their report to the worker's ``Reporter``, which writes
at most one report per job a second (merged: the latest progress, the latest heartbeat).
"""

from __future__ import annotations

import math
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Protocol

__all__ = ["JobContext", "Reporter", "current_job", "reset_current_job", "set_current_job"]


class Reporter(Protocol):
    """Takes an attempt's progress and heartbeat reports (from any thread) and writes them later, batched."""

    def report(
        self,
        job_id: int,
        lease: int,
        *,
        fraction: float | None = None,
        message: str | None = None,
        beat: bool = False,
        extend: float | None = None,
    ) -> None:
        """``beat``: a heartbeat, extending the lease by ``extend`` seconds (None: the worker lease)."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running attempt knows about itself."""

    id: int
    attempt: int
    queue: str
    task: str
    worker_id: int | None = None
    lease: int = 0
    reporter: Reporter | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0 to 1, and a message); written within about a second, the latest report wins."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError("progress message must be a string")
        if self.reporter is not None:
            self.reporter.report(self.id, self.lease, fraction=float(fraction), message=message)

    def heartbeat(self, seconds: float | None = None) -> None:
        """Extend this attempt's own lease: it promises its next heartbeat within ``seconds`` (default: the
        worker lease, ``PGSCHED_LEASE_SECONDS``) of the write, which comes within about a second. While the
        promise holds, the reaper leaves the job alone even if its worker's heartbeat is stale; once it
        lapses, the reaper rescues the job (kind ``lease_expired``) even if its worker still beats."""
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ValueError(f"heartbeat seconds must be a positive number, got {seconds!r}")
        if self.reporter is not None:
            self.reporter.report(self.id, self.lease, beat=True, extend=None if seconds is None else float(seconds))


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
