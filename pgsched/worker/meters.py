"""Per-(queue, task) children of the worker's Prometheus metrics, looked up once and reused.

``Counter.labels(...)`` costs a lock and a dict lookup per call; the hot path pays it once per label set.
"""

from __future__ import annotations

from typing import Any

from pgsched import metrics

__all__ = ["Meters"]


class _Set:
    __slots__ = ("cancelled", "dead", "duration", "failed", "retried", "started", "succeeded", "wait")

    def __init__(self, queue: str, task: str) -> None:
        self.started: Any = metrics.JOBS_STARTED.labels(queue, task)
        self.succeeded: Any = metrics.JOBS_SUCCEEDED.labels(queue, task)
        self.failed: Any = metrics.JOBS_FAILED.labels(queue, task)
        self.retried: Any = metrics.JOBS_RETRIED.labels(queue, task)
        self.dead: Any = metrics.JOBS_DEAD.labels(queue, task)
        self.cancelled: Any = metrics.JOBS_CANCELLED.labels(queue, task)
        self.duration: Any = metrics.JOB_DURATION.labels(queue, task)
        self.wait: Any = metrics.JOB_WAIT.labels(queue, task)


class Meters:
    def __init__(self) -> None:
        self._sets: dict[tuple[str, str], _Set] = {}

    def of(self, queue: str, task: str) -> _Set:
        key = (queue, task)
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = _Set(queue, task)
        return found

    @staticmethod
    def error_entries(queue: str, task: str, kind: str, n: int) -> None:
        metrics.JOB_ERROR_ENTRIES.labels(queue, task, kind).inc(n)

    @staticmethod
    def running(n: int) -> None:
        metrics.WORKER_RUNNING_JOBS.set(n)
