"""The cluster-wide job counters and histograms of ``/metrics``, built from the leader's totals.

Interface layer: turns rows of ``pgsched.job_totals`` and ``job_total_buckets`` (read once per scrape;
small tables, one row per queue and task) into Prometheus families. It never reads ``pgsched.jobs``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from pgsched.admin_store import JobTotals
from pgsched.metrics import CLUSTER_COUNTED_UNTIL, CLUSTER_COUNTERS, CLUSTER_HISTOGRAMS, LATENCY_BUCKETS

__all__ = ["JobTotalsCollector"]

_LABELS = ["queue", "task"]


class JobTotalsCollector:
    """A one-scrape collector over one ``JobTotals`` snapshot."""

    def __init__(self, snapshot: JobTotals) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for column, (name, doc) in CLUSTER_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=_LABELS)
            for row in self._snapshot.totals:
                family.add_metric([row["queue"], row["task"]], float(row[column]))
            yield family
        for metric, (name, doc) in CLUSTER_HISTOGRAMS.items():
            yield self._histogram(metric, name, doc)
        until = GaugeMetricFamily(*CLUSTER_COUNTED_UNTIL)
        if self._snapshot.counted_until is not None:
            until.add_metric([], self._snapshot.counted_until.timestamp())
        yield until

    def _histogram(self, metric: str, name: str, doc: str) -> HistogramMetricFamily:
        counts: defaultdict[tuple[str, str], dict[float, int]] = defaultdict(dict)
        for row in self._snapshot.buckets:
            if row["metric"] == metric:
                counts[(row["queue"], row["task"])][float(row["le"])] = int(row["jobs"])
        family = HistogramMetricFamily(name, doc, labels=_LABELS)
        sums = {(r["queue"], r["task"]): float(r[f"{metric}_sum"]) for r in self._snapshot.totals}
        for key in sorted(counts.keys() | sums.keys()):
            family.add_metric(list(key), _cumulative(counts.get(key, {})), sums.get(key, 0.0))
        return family


def _cumulative(jobs_by_le: dict[float, int]) -> list[tuple[str, float]]:
    """Prometheus buckets: for each bound, the attempts at or below it; "+Inf" holds them all."""
    out = []
    for bound in LATENCY_BUCKETS:
        out.append((repr(float(bound)), float(sum(n for le, n in jobs_by_le.items() if le <= bound))))
    out.append(("+Inf", float(sum(jobs_by_le.values()))))
    return out
