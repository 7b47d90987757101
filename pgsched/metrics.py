"""Every Prometheus metric pgsched exports, defined once here (a leaf: no I/O, no pgsched imports).

Process-local counters and histograms live in the default registry; the API adds gauges read
from the database at scrape time (queue depth, dead count, leader present) in its own collector.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
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
    "LEADER_IS_LEADER",
    "LISTENER_RECONNECTS",
    "SCHEDULES_FIRED",
    "WORKER_RUNNING_JOBS",
]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

JOBS_STARTED = Counter("pgsched_jobs_started_total", "Job attempts started by this worker.", ["queue", "task"])
JOBS_SUCCEEDED = Counter("pgsched_jobs_succeeded_total", "Job attempts that succeeded.", ["queue", "task"])
JOBS_FAILED = Counter("pgsched_jobs_failed_total", "Job attempts that failed (raised or timed out).", ["queue", "task"])
JOBS_RETRIED = Counter("pgsched_jobs_retried_total", "Failed attempts queued again for a retry.", ["queue", "task"])
JOBS_DEAD = Counter("pgsched_jobs_dead_total", "Jobs that ran out of attempts.", ["queue", "task"])
JOBS_CANCELLED = Counter("pgsched_jobs_cancelled_total", "Running jobs cancelled on request.", ["queue", "task"])
JOB_ERROR_ENTRIES = Counter(
    "pgsched_job_error_entries_total",
    "Entries this worker wrote to jobs.errors, by kind: what ended or delayed an attempt (exception, timeout,"
    " no_retry, snooze, snooze_limit, retry, discard, cancel, result, crash, memory).",
    ["queue", "task", "kind"],
)
JOB_DURATION = Histogram(
    "pgsched_job_duration_seconds", "Run time of one attempt.", ["queue", "task"], buckets=_LATENCY_BUCKETS
)
JOB_WAIT = Histogram(
    "pgsched_job_wait_seconds",
    "Time from run_at to the start of an attempt.",
    ["queue", "task"],
    buckets=_LATENCY_BUCKETS,
)
WORKER_RUNNING_JOBS = Gauge("pgsched_worker_running_jobs", "Jobs running in this worker now.")
LISTENER_RECONNECTS = Counter("pgsched_listener_reconnects_total", "Times the LISTEN connection was re-established.")
LEADER_IS_LEADER = Gauge("pgsched_leader_is_leader", "1 while this process holds the leader lock.")
SCHEDULES_FIRED = Counter("pgsched_schedules_fired_total", "Cron jobs inserted by this leader.", ["schedule"])
DEDUPE_CACHE_HITS = Counter("pgsched_dedupe_cache_hits_total", "Run-key lookups answered by the Redis cache.")
DEDUPE_CACHE_MISSES = Counter("pgsched_dedupe_cache_misses_total", "Run-key lookups the Redis cache could not answer.")
DEDUPE_CACHE_ERRORS = Counter(
    "pgsched_dedupe_cache_errors_total", "Redis errors or timeouts; the enqueue fell back to PostgreSQL."
)
