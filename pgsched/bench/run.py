"""`pgsched bench`'s default run: cold drains per statistics state and process count, the enqueue paths, NOTIFY, CPU
per job; every figure once per run, and the medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from pgsched.bench.drain import STATS_STATES, cold_drain
from pgsched.bench.enqueue import bulk_paths, single_enqueue
from pgsched.bench.facts import machine_facts
from pgsched.bench.probes import notify_rates, start_latency
from pgsched.bench.scratch import DEFAULT_PREFIX, Databases, admin_dsn
from pgsched.bench.server import PrivateServer, ServerSettings, settings_report

__all__ = ["STATS_STATES", "BenchOptions", "bench_server", "medians", "run_bench"]

BASELINE = "after-load"  # the statistics state of production: autoanalyze ran after the load


@dataclass(frozen=True)
class BenchOptions:
    dsn: str | None = None
    db_prefix: str = DEFAULT_PREFIX
    runs: int = 3
    backlog: int = 100_000
    concurrency: int = 10
    processes: tuple[int, ...] = (1, 2, 4)
    stats_states: tuple[str, ...] = STATS_STATES
    bulk_jobs: int = 20_000
    enqueue_samples: int = 500
    latency_samples: int = 200
    clients: int = 16
    enqueue_seconds: float = 3.0


@dataclass(frozen=True)
class BenchServer:
    dsn: str
    settings: ServerSettings
    private: bool


@contextmanager
def bench_server(dsn: str | None, *, statements: bool = False) -> Iterator[BenchServer]:
    """The server to measure: ``dsn``'s, or a private stock one started now and removed afterwards
    (with pg_stat_statements preloaded when ``statements`` are wanted)."""
    if dsn is not None:
        yield BenchServer(dsn, settings_report(dsn, statements=statements), private=False)
        return
    with PrivateServer(statements=statements) as private_dsn:
        yield BenchServer(private_dsn, settings_report(private_dsn, statements=statements), private=True)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(key for run in runs for key in run)
    return {key: statistics.median(run[key] for run in runs if key in run) for key in keys}


def _drains(options: BenchOptions) -> list[tuple[str, int]]:
    plan = [(stats, 1) for stats in options.stats_states]
    return plan + [(BASELINE, n) for n in options.processes if (BASELINE, n) not in plan]


def run_once(options: BenchOptions, databases: Databases, index: int) -> dict[str, float]:
    """Every figure once: cold drains per statistics state and per process count, then the enqueue side."""
    figures: dict[str, float] = {}
    for stats, processes in _drains(options):
        result = cold_drain(
            databases, backlog=options.backlog, processes=processes, concurrency=options.concurrency, stats=stats
        )
        figures |= result.figures()
    dsn = databases.clone(f"enqueue{index}")
    try:
        figures |= single_enqueue(dsn, options.enqueue_samples)
        figures |= bulk_paths(dsn, options.bulk_jobs)
        figures |= notify_rates(dsn, options.clients, options.enqueue_seconds)
        figures |= start_latency(dsn, options.latency_samples, options.concurrency)
    finally:
        databases.drop(dsn)
    return figures


def run_bench(
    options: BenchOptions, *, progress: Callable[[int, dict[str, float]], None] | None = None
) -> dict[str, Any]:
    """Run every measurement ``options.runs`` times; returns server and machine facts, runs and medians."""
    facts = machine_facts()
    runs: list[dict[str, float]] = []
    with bench_server(options.dsn) as server:
        databases = Databases(admin_dsn(server.dsn), options.db_prefix)
        try:
            for index in range(options.runs):
                runs.append(run_once(options, databases, index))
                if progress is not None:
                    progress(index + 1, runs[-1])
        finally:
            databases.drop_all()
    return {
        "machine": facts,
        "load_average_after": machine_facts()["load_average"],
        "server": {"private": server.private, **server.settings.values},
        "warnings": server.settings.warnings,
        "options": {k: v for k, v in asdict(options).items() if k != "dsn"},
        "runs": runs,
        "median": medians(runs),
    }
