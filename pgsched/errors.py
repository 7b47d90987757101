"""pgsched's exceptions: what callers catch. psycopg errors never escape the data layer.

A leaf module: it imports nothing from pgsched.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "InvalidStateError",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "MigrationError",
    "PermanentError",
    "PgschedError",
    "ResultTimeout",
    "ScheduleNotFound",
    "TaskNotFound",
    "ValidationError",
    "WorkflowNotFound",
]


class PgschedError(Exception):
    """Base class of every error pgsched raises on purpose."""


class ValidationError(PgschedError, ValueError):
    """Bad input; ``field`` names what was wrong (``args``, ``queue``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PermanentError(PgschedError):
    """Raised by a task when retrying cannot help: the job goes to the dead-letter queue at once,
    whatever attempts it has left (for example a command outside the worker's shell allowlist)."""


class ConfigurationError(PgschedError):
    """Settings are missing or inconsistent (for example no PGSCHED_DSN)."""


class DatabaseUnavailable(PgschedError):
    """PostgreSQL could not be reached or the connection broke."""


class MigrationError(PgschedError):
    """A migration failed, or an applied migration file was edited."""


class JobNotFound(PgschedError, LookupError):
    """No job with that id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class JobFailed(PgschedError):
    """The job is dead (out of attempts): it has no result. ``error`` is its last error message and
    ``details`` the whole last entry of ``jobs.errors`` (attempt, kind, traceback, ...)."""

    def __init__(self, job_id: int, error: str | None, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"job {job_id} failed: {error or 'no error recorded'}")
        self.job_id = job_id
        self.error = error
        self.details = details or {}


class JobCancelled(PgschedError):
    """The job was cancelled: it has no result."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class ResultTimeout(PgschedError, TimeoutError):
    """The job did not finish within the time the caller was willing to wait (it may still finish)."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class ScheduleNotFound(PgschedError, LookupError):
    """No schedule with that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} does not exist")
        self.name = name


class TaskNotFound(PgschedError, LookupError):
    """No task registered under that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"task {name!r} is not registered")
        self.name = name


class WorkflowNotFound(PgschedError, LookupError):
    """No workflow with that id."""

    def __init__(self, workflow_id: int) -> None:
        super().__init__(f"workflow {workflow_id} does not exist")
        self.workflow_id = workflow_id


class InvalidStateError(PgschedError):
    """The job or schedule is not in a state that allows the operation."""
