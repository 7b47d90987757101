"""A stored job: ``Job`` (one row of ``pgsched.jobs``) and its states.

A leaf module: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = ["FINISHED_STATES", "FINISH_SETTLE", "Job", "JobState"]


class JobState(StrEnum):
    WAITING = "waiting"  # for its dependencies (a workflow step); claims never see it
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
# A finish's finished_at is taken before its transaction commits, so the newest instants may still gain rows that are
# not yet visible: passes that read jobs by finish time (the stats rollup, the history counters) take a finish once
# it is this old.
FINISH_SETTLE = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Job:
    """One row of ``pgsched.jobs``."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    priority: int
    run_at: datetime
    state: JobState
    attempt: int
    max_attempts: int
    run_key: str | None
    schedule_name: str | None
    worker_id: int | None
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    errors: list[dict[str, Any]]
    result: Any
    timeout: timedelta | None
    created_at: datetime
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    # ``args`` as the JSON text validation produced; None when built by hand (the insert encodes then).
    args_json: str | None = field(default=None, compare=False, repr=False)
    snoozes: int = 0
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    lease_until: datetime | None = None  # the running attempt promised its next heartbeat by then
    run_key_scope: str | None = None  # with a run key: retention (also when NULL in old rows), active or period
    run_key_period: timedelta | None = None

    @property
    def expired(self) -> bool:
        """Ended because it was not started by ``expires_at`` (cancelled with an errors entry of kind "expired")."""
        return self.state is JobState.CANCELLED and any(e.get("kind") == "expired" for e in self.errors[-1:])

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            queue=row["queue"],
            task=row["task"],
            args=row["args"],
            priority=row["priority"],
            run_at=row["run_at"],
            state=JobState(row["state"]),
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            run_key=row["run_key"],
            schedule_name=row["schedule_name"],
            worker_id=row["worker_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            cancel_requested_at=row["cancel_requested_at"],
            errors=row["errors"],
            result=row["result"],
            timeout=row["timeout"],
            created_at=row["created_at"],
            concurrency_key=row.get("concurrency_key"),
            concurrency_limit=row.get("concurrency_limit"),
            snoozes=row.get("snoozes", 0),
            progress=row.get("progress"),
            progress_message=row.get("progress_message"),
            progress_at=row.get("progress_at"),
            lease_until=_lease_until(row),
            tags=tuple(row.get("tags") or ()),
            meta=row.get("meta") or {},
            expires_at=row.get("expires_at"),
            run_key_scope=row.get("run_key_scope") or ("retention" if row["run_key"] is not None else None),
            run_key_period=row.get("run_key_period"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (datetimes as ISO 8601, timeout in seconds)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id,
            "queue": self.queue,
            "task": self.task,
            "args": self.args,
            "priority": self.priority,
            "run_at": iso(self.run_at),
            "state": str(self.state),
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "run_key": self.run_key,
            "run_key_scope": self.run_key_scope,
            "run_key_period_seconds": self.run_key_period.total_seconds() if self.run_key_period is not None else None,
            "schedule_name": self.schedule_name,
            "worker_id": self.worker_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "cancel_requested_at": iso(self.cancel_requested_at),
            "errors": self.errors,
            "result": self.result,
            "timeout": self.timeout.total_seconds() if self.timeout is not None else None,
            "created_at": iso(self.created_at),
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "snoozes": self.snoozes,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "progress_at": iso(self.progress_at),
            "lease_until": iso(self.lease_until),
            "tags": list(self.tags),
            "meta": self.meta,
            "expires_at": iso(self.expires_at),
            "expired": self.expired,
        }


def _lease_until(row: Mapping[str, Any]) -> datetime | None:
    """The heartbeat promise of the running attempt: only an extension made under the current lease counts."""
    lease = row.get("lease")
    if lease is None or row.get("extended_lease") != lease:
        return None
    until: datetime | None = row.get("extended_until")
    return until
