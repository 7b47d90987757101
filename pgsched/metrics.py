"""Every Prometheus metric pgsched exports, defined once here (a leaf: no I/O, no pgsched imports).

Process-local counters and histograms live in the default registry; the API adds gauges read
from the database at scrape time (queue depth, dead count, leader present) in its own collector,
and the cluster-wide job counters and histograms named here (``CLUSTER_*``), read from the totals
the leader keeps (``pgsched.job_totals``).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

__all__ = [
    "API_REPLICA_FALLBACKS",
    "CLUSTER_COUNTED_UNTIL",
    "CLUSTER_COUNTERS",
    "CLUSTER_HISTOGRAMS",
    "DEDUPE_CACHE_ERRORS",
    "DEDUPE_CACHE_HITS",
    "DEDUPE_CACHE_MISSES",
    "JOBS_CANCELLED",
    "JOBS_DEAD",
    "JOBS_FAILED",
    "JOBS_RETRIED",
    "JOBS_STARTED",
    "JOBS_SUCCEEDED",
    "JOB_DURATION",
    "JOB_WAIT",
    "LATENCY_BUCKETS",
    "LEADER_IS_LEADER",
    "LoopHistogram",
    "LISTENER_RECONNECTS",
    "SCHEDULES_FIRED",
    "WORKER_CLAIMS",
    "WORKER_CLAIMS_HELD",
    "WORKER_RUNNING_JOBS",
]

# Also the buckets of the cluster-wide histograms (pgsched.job_total_buckets, filled by the leader).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

API_REPLICA_FALLBACKS = Counter(
    "pgsched_api_replica_fallbacks_total", "API reads meant for PGSCHED_READ_DSN answered by the primary instead."
)
JOBS_STARTED = Counter("pgsched_jobs_started_total", "Job attempts started by this worker.", ["queue", "task"])
JOBS_SUCCEEDED = Counter("pgsched_jobs_succeeded_total", "Job attempts that succeeded.", ["queue", "task"])
JOBS_FAILED = Counter("pgsched_jobs_failed_total", "Job attempts that failed (raised or timed out).", ["queue", "task"])
JOBS_RETRIED = Counter("pgsched_jobs_retried_total", "Failed attempts queued again for a retry.", ["queue", "task"])
JOBS_DEAD = Counter("pgsched_jobs_dead_total", "Jobs that ran out of attempts.", ["queue", "task"])
JOBS_CANCELLED = Counter("pgsched_jobs_cancelled_total", "Running jobs cancelled on request.", ["queue", "task"])
JOBS_EXPIRED = Counter(
    "pgsched_jobs_expired_total", "Queued jobs this leader ended unstarted past their expires_at.", ["queue", "task"]
)
JOB_ERROR_ENTRIES = Counter(
    "pgsched_job_error_entries_total",
    "Entries this worker wrote to jobs.errors, by kind: what ended or delayed an attempt (exception, timeout,"
    " no_retry, snooze, snooze_limit, retry, discard, cancel, result, crash, memory).",
    ["queue", "task", "kind"],
)
_go_float = cast(Callable[[float], str], floatToGoString)  # the exposition's number format


class _Tally:
    """One label set of a ``LoopHistogram``: counts per bucket (the last one is +Inf) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= le
        self.sum += value


class LoopHistogram:
    """A labelled histogram observed from one thread only (the worker's event loop), exported as a
    prometheus_client ``Histogram`` is (cumulative ``_bucket`` with ``le``, ``_count``, ``_sum``).

    prometheus_client's ``observe`` takes a lock per bucket, about 2.6 µs, twice per job: a tenth
    of the worker's CPU per no-op job. Here an observation is a bisect and two additions; a scrape
    from another thread may see one observation in the buckets and not yet in the sum.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = tuple(sorted(float(b) for b in buckets))
        self._les = [_go_float(b) for b in (*self._bounds, float("inf"))]  # "0.001", "1.0", "+Inf"
        self._children: dict[tuple[str, ...], _Tally] = {}
        self._lock = threading.Lock()  # guards the children dict, not the counts
        registry.register(self)

    def labels(self, *values: str) -> _Tally:
        key = tuple(values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = _Tally(self._bounds)
        return child

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            children = list(self._children.items())
        for key, tally in children:
            running = 0
            buckets = []
            for le, count in zip(self._les, list(tally.counts), strict=True):
                running += count
                buckets.append((le, float(running)))
            family.add_metric(list(key), buckets, tally.sum)
        yield family


JOB_DURATION = LoopHistogram(
    "pgsched_job_duration_seconds", "Run time of one attempt.", ["queue", "task"], buckets=LATENCY_BUCKETS
)
JOB_WAIT = LoopHistogram(
    "pgsched_job_wait_seconds",
    "Time from run_at to the start of an attempt.",
    ["queue", "task"],
    buckets=LATENCY_BUCKETS,
)
WORKER_RUNNING_JOBS = Gauge("pgsched_worker_running_jobs", "Jobs running in this worker now.")
WORKER_CLAIMS = Counter(
    "pgsched_worker_claims_total", "Claim statements this worker ran (a round that found nothing too)."
)
WORKER_CLAIMS_HELD = Gauge(
    "pgsched_worker_claims_held",
    "1 while this worker holds back its next claim until its finished jobs are written (back-pressure from the"
    " database).",
)
LISTENER_RECONNECTS = Counter("pgsched_listener_reconnects_total", "Times the LISTEN connection was re-established.")
LEADER_IS_LEADER = Gauge("pgsched_leader_is_leader", "1 while this process holds the leader lock.")
SCHEDULES_FIRED = Counter("pgsched_schedules_fired_total", "Cron jobs inserted by this leader.", ["schedule"])
LIVE_VACUUMS = Counter(
    "pgsched_live_vacuums_total",
    "Vacuums of a live partition (jobs_queued, jobs_running) this leader ran (one skipped as locked included).",
    ["table"],
)
DEDUPE_CACHE_HITS = Counter("pgsched_dedupe_cache_hits_total", "Run-key lookups answered by the Redis cache.")
DEDUPE_CACHE_MISSES = Counter("pgsched_dedupe_cache_misses_total", "Run-key lookups the Redis cache could not answer.")
DEDUPE_CACHE_ERRORS = Counter(
    "pgsched_dedupe_cache_errors_total", "Redis errors or timeouts; the enqueue fell back to PostgreSQL."
)

# Cluster-wide, from the database (the API's /metrics): column of pgsched.job_totals -> (name, help).
# Counted when a job finishes, once the leader's rollup has passed it (its settle delay plus the prune interval).
CLUSTER_COUNTERS = {
    "started": ("pgsched_cluster_jobs_started_total", "Attempts started, by every worker, of jobs that finished."),
    "succeeded": ("pgsched_cluster_jobs_succeeded_total", "Jobs that succeeded, in the whole cluster."),
    "failed": ("pgsched_cluster_jobs_failed_total", "Failed attempts (raised or timed out) of jobs that finished."),
    "retried": ("pgsched_cluster_jobs_retried_total", "Failed attempts queued again, of jobs that finished."),
    "dead": ("pgsched_cluster_jobs_dead_total", "Jobs that ran out of attempts (or failed permanently)."),
    "cancelled": ("pgsched_cluster_jobs_cancelled_total", "Jobs cancelled, waiting or running."),
    "lost": ("pgsched_cluster_jobs_lost_total", "Attempts the reaper charged: a lost worker or an expired lease."),
}
# metric of pgsched.job_total_buckets -> (name, help); the buckets are LATENCY_BUCKETS.
CLUSTER_HISTOGRAMS = {
    "duration": (
        "pgsched_cluster_job_duration_seconds",
        "Claim to finish of each finished job's last attempt (database clock), in the whole cluster.",
    ),
    "wait": ("pgsched_cluster_job_wait_seconds", "run_at to claim of each finished job's last attempt."),
}
CLUSTER_COUNTED_UNTIL = (
    "pgsched_cluster_jobs_counted_until_timestamp_seconds",
    "The cluster job metrics count the jobs finished up to this time (Unix seconds).",
)
