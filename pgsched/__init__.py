"""pgsched: a job queue and cron scheduler in which PostgreSQL is the only coordinator."""

from __future__ import annotations

from pgsched.app import Pgsched
from pgsched.clock import Clock, FixedClock, SystemClock
from pgsched.config import Settings
from pgsched.context import JobContext, current_job
from pgsched.control import Cancel, Discard, JobControl, Retry, Snooze
from pgsched.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidStateError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    MigrationError,
    PgschedError,
    ResultTimeout,
    ScheduleNotFound,
    TaskNotFound,
    ValidationError,
    WorkflowNotFound,
)
from pgsched.hooks import JobEvent
from pgsched.job import NewJob
from pgsched.job_row import Job, JobState
from pgsched.retry import RetryPolicy
from pgsched.tasks import Task
from pgsched.workflow import Started, Step

__version__ = "0.1.0"

__all__ = [
    "Cancel",
    "Clock",
    "ConfigurationError",
    "DatabaseUnavailable",
    "Discard",
    "FixedClock",
    "InvalidStateError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobControl",
    "JobEvent",
    "JobFailed",
    "JobNotFound",
    "JobState",
    "MigrationError",
    "NewJob",
    "Pgsched",
    "PgschedError",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "ScheduleNotFound",
    "Settings",
    "Snooze",
    "Started",
    "Step",
    "SystemClock",
    "Task",
    "TaskNotFound",
    "ValidationError",
    "WorkflowNotFound",
    "__version__",
    "current_job",
]
