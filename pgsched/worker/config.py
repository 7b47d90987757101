"""WorkerConfig: the knobs of one worker process, validated once (the CLI builds it from flags)."""

from __future__ import annotations

from dataclasses import dataclass

from pgsched.errors import ValidationError
from pgsched.job import validate_queue

__all__ = ["WorkerConfig"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """``concurrency`` jobs run at once; the producer claims up to ``concurrency`` plus an adaptive
    prefetch (at most ``prefetch_max``); the completer writes every ``flush_interval`` seconds or
    ``flush_size`` results, whichever comes first, and at once when no other job is in hand."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    grace_seconds: float = 30.0
    prefetch_max: int = 500
    flush_interval: float = 0.003
    flush_size: int = 1000
    # A claimed job of a task this worker does not serve goes back uncharged, this many seconds later in line.
    unserved_delay: float = 30.0
    processes: int | None = None  # children of the process pool (executor="process"); None: the CPU count
    max_tasks_per_child: int | None = None  # a child is replaced after this many jobs (None: never)
    child_memory_mb: float | None = None  # a child above this resident memory is killed mid-job, or retired after one

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValidationError("queues", "give at least one queue")
        for queue in self.queues:
            validate_queue(queue, "queues")
        if len(set(self.queues)) != len(self.queues):
            raise ValidationError("queues", "a queue is listed twice")
        if isinstance(self.concurrency, bool) or not 1 <= self.concurrency <= 10_000:
            raise ValidationError("concurrency", f"must be from 1 to 10000, got {self.concurrency!r}")
        if self.grace_seconds < 0:
            raise ValidationError("grace", "must be zero or more seconds")
        if not 0 <= self.prefetch_max <= 100_000:
            raise ValidationError("prefetch_max", "must be from 0 to 100000")
        if not 0 < self.unserved_delay <= 3600:
            raise ValidationError("unserved_delay", "must be from 0 (excluded) to 3600 seconds")
        if self.processes is not None and not 1 <= self.processes <= 1024:
            raise ValidationError("processes", "must be from 1 to 1024")
        if self.max_tasks_per_child is not None and self.max_tasks_per_child < 1:
            raise ValidationError("max_tasks_per_child", "must be at least 1")
        if self.child_memory_mb is not None and not self.child_memory_mb > 0:
            raise ValidationError("child_memory_mb", "must be a positive number of MiB")
        if self.flush_interval <= 0 or self.flush_size < 1:
            raise ValidationError("flush_interval", "flush interval and size must be positive")
