"""Retention per queue and final state: the input rules, the rows as callers see them, and how far ahead the
leader's time partitions reach (``HISTORY_MAX_AHEAD``) so a retention beyond them can be named, not silent.

Leaf module: no SQL. Queue ``*`` holds the defaults, which the leader writes from its settings each prune
round, so callers may read it but never set it (it would be overwritten within one round).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgsched.errors import PgschedError, ValidationError
from pgsched.job import validate_queue
from pgsched.job_row import JobState

__all__ = [
    "DEFAULTS_QUEUE",
    "DEFAULT_ENV",
    "FINAL_STATES",
    "HISTORY_MAX_AHEAD",
    "MAX_KEEP_SECONDS",
    "HistoryHorizon",
    "RetentionNotFound",
    "RetentionRule",
    "format_seconds",
    "partitions_needed",
    "validate_final_state",
    "validate_keep_seconds",
    "validate_retention_queue",
]

DEFAULTS_QUEUE = "*"
FINAL_STATES = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
# The settings the leader writes the defaults row (queue *) from, per final state.
DEFAULT_ENV = {
    JobState.SUCCEEDED: "PGSCHED_RETENTION_SUCCEEDED_SECONDS",
    JobState.DEAD: "PGSCHED_RETENTION_DEAD_SECONDS",
    JobState.CANCELLED: "PGSCHED_RETENTION_CANCELLED_SECONDS",
}
# As the table's retention_keep_range (migration 0020): ten years and some.
MAX_KEEP_SECONDS = 3660 * 86400.0
# Time partitions the leader keeps ahead of now at most (pgsched.history_maintain's p_max_ahead): a retention
# needing more would make thousands of tables; its jobs wait in jobs_done_default instead.
HISTORY_MAX_AHEAD = 400


class RetentionNotFound(PgschedError, LookupError):
    """The queue has no retention of its own for that state (it uses the defaults)."""

    def __init__(self, queue: str, state: str) -> None:
        super().__init__(f"queue {queue!r} has no retention of its own for {state} jobs (it uses the defaults)")
        self.queue = queue
        self.state = state


def validate_retention_queue(queue: object) -> str:
    """A queue whose retention a caller may set: any valid queue name, never the defaults row."""
    if queue == DEFAULTS_QUEUE:
        names = ", ".join(DEFAULT_ENV.values())
        raise ValidationError(
            "queue", f"* holds the defaults, which the leader rewrites from {names} every prune round: set those"
        )
    return validate_queue(queue)


def validate_final_state(state: object) -> JobState:
    if not isinstance(state, str) or state not in {str(s) for s in FINAL_STATES}:
        raise ValidationError("state", f"must be succeeded, dead or cancelled, got {state!r}")
    return JobState(state)


def validate_keep_seconds(seconds: object, field: str = "keep_seconds") -> float:
    """How long to keep finished jobs: from 1 second to ``MAX_KEEP_SECONDS``."""
    # An int past a float's range (a JSON integer of 309+ digits) is compared as it is: float() would overflow.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError(field, f"must be a number of seconds from 1 to {MAX_KEEP_SECONDS:.0f} (3660 days)")
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or not 1 <= seconds <= MAX_KEEP_SECONDS:
        raise ValidationError(field, f"must be a number of seconds from 1 to {MAX_KEEP_SECONDS:.0f} (3660 days)")
    return float(seconds)


def format_seconds(seconds: float) -> str:
    """``90d``, ``12h``, ``30m``, ``45s``, or mixed (``1d 6h``), as the CLI's duration syntax reads them."""
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    if left or not parts:
        parts.append(f"{left}s")
    return " ".join(parts)


def partitions_needed(keep_seconds: float, width_seconds: float) -> int:
    """Time partitions ahead that jobs finishing now with this retention need: the one holding now, those up to
    now + keep, and one more width (what ``pgsched.history_maintain`` creates)."""
    return math.ceil(keep_seconds / width_seconds) + 2


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """How long finished jobs of a queue are kept in one final state; ``source`` is ``queue`` (its own row) or
    ``default`` (queue ``*``, from the leader's settings)."""

    queue: str
    state: JobState
    keep_seconds: float
    source: str
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RetentionRule:
        return cls(row["queue"], JobState(row["state"]), float(row["keep_seconds"]), row["source"], row["updated_at"])

    def to_dict(self) -> dict[str, Any]:
        keep = int(self.keep_seconds) if self.keep_seconds.is_integer() else self.keep_seconds
        return {
            "queue": self.queue,
            "state": str(self.state),
            "keep_seconds": keep,
            "keep": format_seconds(self.keep_seconds),
            "source": self.source,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True, slots=True)
class HistoryHorizon:
    """How far the time partitions reach against the longest retention; ``width_seconds`` is that of the newest
    partition (the leader's PGSCHED_HISTORY_PARTITION_SECONDS), None before the leader made any."""

    width_seconds: float | None
    partitions_ahead: int
    covered_until: datetime | None
    default_rows: int
    longest_keep_seconds: float
    longest_queue: str
    longest_state: str

    def warning(self, keep_seconds: float, width_seconds: float) -> str | None:
        """Why jobs kept ``keep_seconds`` would wait in jobs_done_default, or None when partitions cover them."""
        needed = partitions_needed(keep_seconds, width_seconds)
        if needed <= HISTORY_MAX_AHEAD:
            return None
        covered = (HISTORY_MAX_AHEAD - 2) * width_seconds
        wider = math.ceil(keep_seconds / (HISTORY_MAX_AHEAD - 2))
        return (
            f"a retention of {format_seconds(keep_seconds)} needs {needed} time partitions of "
            f"{format_seconds(width_seconds)} ahead; the leader keeps at most {HISTORY_MAX_AHEAD} "
            f"(a retention up to {format_seconds(covered)}): jobs kept longer wait in pgsched.jobs_done_default "
            f"until their partition is created, which slows every partition the leader attaches; "
            f"set PGSCHED_HISTORY_PARTITION_SECONDS to at least {wider} for the leader"
        )
