"""``/metrics``: Prometheus text. Process-local counters from ``pgsched.metrics`` plus gauges read
from the database at scrape time (queue depth by state, oldest due age, dead jobs, leader, workers)
and the cluster-wide job counters and histograms the leader keeps (``pgsched.api.job_totals``).

Interface layer; open without a token unless ``Settings.api_public_metrics`` is off. When the
database is unreachable the scrape still answers, with ``pgsched_database_up 0``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pgsched import metrics as _worker_metrics  # noqa: F401  (registers the worker metrics in this process)
from pgsched.admin_store import Health, JobTotals
from pgsched.api.auth import authorize
from pgsched.api.job_totals import JobTotalsCollector
from pgsched.api.state import api_state
from pgsched.errors import DatabaseUnavailable
from pgsched.token_store import Scope

__all__ = ["DatabaseSnapshotCollector", "routes"]

_STATES = ("due", "scheduled", "running", "succeeded", "dead", "cancelled")


class DatabaseSnapshotCollector:
    """A one-scrape collector over values already read from the database."""

    def __init__(self, queues: Sequence[dict[str, Any]] | None, health: Health | None) -> None:
        self._queues = queues
        self._health = health

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pgsched_database_up", "1 when the API could read the database at this scrape.")
        up.add_metric([], 0 if self._queues is None or self._health is None else 1)
        yield up
        if self._queues is None or self._health is None:
            return
        depth = GaugeMetricFamily(
            "pgsched_queue_jobs", "Jobs per queue and state (due/scheduled are queued).", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "pgsched_queue_oldest_due_age_seconds", "Age of the oldest due job of the queue.", labels=["queue"]
        )
        for row in self._queues:
            for state in _STATES:
                depth.add_metric([row["queue"], state], float(row[state]))
            oldest.add_metric([row["queue"]], max(0.0, float(row["oldest_due_seconds"] or 0.0)))
        dead = GaugeMetricFamily("pgsched_dead_jobs", "Jobs in the dead-letter queue.")
        dead.add_metric([], float(sum(int(r["dead"]) for r in self._queues)))
        leader = GaugeMetricFamily("pgsched_leader_present", "1 when some process holds the leader lock.")
        leader.add_metric([], 1.0 if self._health.leader else 0.0)
        workers = GaugeMetricFamily("pgsched_workers_alive", "Registered processes whose liveness lock is held.")
        workers.add_metric([], float(self._health.workers_alive))
        yield from (depth, oldest, dead, leader, workers)


async def metrics(request: Request) -> Response:
    state = api_state(request)
    if not state.settings.api_public_metrics:
        await authorize(request, Scope.READ)
    queues: list[dict[str, Any]] | None
    health: Health | None
    totals: JobTotals | None
    try:
        queues = await state.reads.read(lambda s: s.admin.queue_counts_list())
        health = await state.admin.health_check()  # the primary: leader and liveness are its session locks
        totals = await state.reads.read(lambda s: s.admin.job_totals_snapshot())
    except DatabaseUnavailable:
        queues, health, totals = None, None, None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseSnapshotCollector(queues, health))
    if totals is not None:
        registry.register(JobTotalsCollector(totals))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
