"""`pgsched bench`: throughput and latency of a real worker process against a real PostgreSQL.

It creates its own databases on the server of ``--dsn`` and drops them at the end; every figure is
the median of ``--runs`` runs. Not a test: it asserts nothing about speed, it reports.
"""

from __future__ import annotations

import statistics
from typing import Any

from pgsched.bench.facts import machine_facts
from pgsched.bench.runner import BenchOptions, Database, admin_dsn, prepare_template, run_once, server_facts

__all__ = ["BenchOptions", "run_bench"]


def run_bench(options: BenchOptions, *, progress: Any = None) -> dict[str, Any]:
    """Run every measurement ``options.runs`` times; returns facts, per-run figures and medians."""
    facts = machine_facts()
    database = Database(admin_dsn(options.dsn))
    runs: list[dict[str, float]] = []
    details: list[dict[str, Any]] = []
    try:
        template = prepare_template(database)
        postgres = server_facts(database.dsn(template))
        for index in range(options.runs):
            figures, detail = run_once(options, database, template, index)
            runs.append(figures)
            details.append(detail)
            if progress is not None:
                progress(index + 1, runs[-1])
    finally:
        database.drop_all()
    medians = {key: statistics.median(run[key] for run in runs if key in run) for key in runs[0]} if runs else {}
    return {
        "machine": facts,
        "load_average_after": machine_facts()["load_average"],
        "postgres": postgres,
        "options": {k: v for k, v in vars(options).items() if k != "dsn"},
        "runs": runs,
        "median": medians,
        "details": details,
    }
