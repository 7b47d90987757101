"""The worker's histograms (``LoopHistogram``) export what a prometheus_client ``Histogram`` exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pgsched.metrics import LoopHistogram

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.7, 1.0, 9.99, 10.0, 11.0, 1e9]


def _exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line  # prometheus_client adds a creation time; the loop histogram does not
    ]


def test_loop_histogram_exports_the_same_buckets_count_and_sum_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("t_seconds", "Doc.", ["queue", "task"], buckets=BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "Doc.", ["queue", "task"], buckets=BUCKETS, registry=theirs)
    for index, value in enumerate(VALUES):
        labels = ("q", "a" if index % 3 else "b")
        loop.labels(*labels).observe(value)
        reference.labels(*labels).observe(value)
    exported = _exposition(ours)
    assert exported == _exposition(theirs)
    assert 't_seconds_bucket{le="0.001",queue="q",task="a"} 2.0' in exported  # le is inclusive
