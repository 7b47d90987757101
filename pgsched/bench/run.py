"""`pgsched bench`'s default run: cold drains per statistics state and process count, the enqueue paths, NOTIFY, CPU
per job; every figure once per run, and the medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from pgsched.bench.drain import STATS_STATES, cold_drain
from pgsched.bench.enqueue import bulk_paths, single_enqueue
from pgsched.bench.facts import machine_facts
from pgsched.bench.probes import notify_rates, start_latency
from pgsched.bench.scratch import DEFAULT_PREFIX, Databases, admin_dsn
from pgsched.bench.server import PrivateServer, ServerSettings, settings_report

__all__ = ["STATS_STATES", "BenchOptions", "bench_server", "medians", "paired_ratios", "run_bench", "same_run_ratios"]

BASELINE = "after-load"  # the statistics state of production: autoanalyze ran after the load

# The enqueue-side figures the report gives as a share of another figure of the same run: figure -> its reference.
REFERENCES = {
    "enqueue.copy_per_s": "enqueue.insert_select_per_s",
    "enqueue.many_1000_per_s": "enqueue.copy_per_s",
    "notify.adaptive_per_s": "notify.off_per_s",
    "notify.waiting_per_s": "notify.off_per_s",
}


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


def _drains(options: BenchOptions, index: int) -> list[tuple[str, int]]:
    """Run ``index``'s drains, rotated one step a run: no drain is always the first of a run (the machine's
    state after the previous run's enqueue side would then always favour, or always cost, the same one)."""
    plan = [(stats, 1) for stats in options.stats_states]
    plan += [(BASELINE, n) for n in options.processes if (BASELINE, n) not in plan]
    turn = index % len(plan)
    return plan[turn:] + plan[:turn]


def paired_ratios(rates: Mapping[tuple[str, int], float]) -> dict[str, float]:
    """Each drain's rate (by statistics state and process count) over its reference drain's in the same run: a
    one-process drain over the one without statistics (``.vs_none``), a drain of several processes over one process
    in its state (``.vs_one``). The median of these is the figure the targets name; pairing leaves out the drift of
    a machine between runs, which a ratio of two medians keeps."""
    ratios: dict[str, float] = {}
    for (stats, processes), rate in rates.items():
        reference, name = (("none", 1), "vs_none") if processes == 1 else ((stats, 1), "vs_one")
        base = rates.get(reference)
        if base:
            ratios[f"drain.{stats}.{processes}.{name}"] = rate / base
    return ratios


def same_run_ratios(figures: Mapping[str, float]) -> dict[str, float]:
    """Each figure of ``REFERENCES`` over its reference in the same run (``<figure>.vs_reference``), paired as the
    drains are: the bulk paths and the NOTIFY variants each run a few seconds apart, and a ratio of two medians
    would keep the machine's drift between runs."""
    return {
        f"{key}.vs_reference": figures[key] / figures[reference]
        for key, reference in REFERENCES.items()
        if key in figures and figures.get(reference)
    }


def run_once(options: BenchOptions, databases: Databases, index: int) -> dict[str, float]:
    """Every figure once: cold drains per statistics state and per process count, then the enqueue side."""
    figures: dict[str, float] = {}
    rates: dict[tuple[str, int], float] = {}
    for stats, processes in _drains(options, index):
        result = cold_drain(
            databases, backlog=options.backlog, processes=processes, concurrency=options.concurrency, stats=stats
        )
        figures |= result.figures()
        rates[(stats, processes)] = result.jobs_per_s
    figures |= paired_ratios(rates)
    dsn = databases.clone(f"enqueue{index}")
    try:
        figures |= single_enqueue(dsn, options.enqueue_samples)
        figures |= bulk_paths(dsn, options.bulk_jobs)
        figures |= notify_rates(dsn, options.clients, options.enqueue_seconds)
        figures |= start_latency(dsn, options.latency_samples, options.concurrency)
    finally:
        databases.drop(dsn)
    return figures | same_run_ratios(figures)


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
