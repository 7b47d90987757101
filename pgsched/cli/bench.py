"""``pgsched bench``: the throughput / latency benchmark (prints machine facts and medians)."""

from __future__ import annotations

from typing import Any

import click

from pgsched.bench import BenchOptions, run_bench
from pgsched.cli.base import CliContext, cli, echo_json, pass_ctx
from pgsched.errors import ValidationError

__all__ = ["bench"]

_LABELS = [
    ("drain_jobs_per_s", "drain (jobs/s, concurrency {concurrency})", "{:,.0f}"),
    ("drain_best_jobs_per_s", "drain (jobs/s, concurrency {best})", "{:,.0f}"),
    ("enqueue_many_jobs_per_s", "enqueue_many (jobs/s, COPY)", "{:,.0f}"),
    ("insert_select_ceiling_per_s", "server-side INSERT ... SELECT generate_series (/s)", "{:,.0f}"),
    ("latency_p50_ms", "enqueue->start p50 (ms, from commit)", "{:.2f}"),
    ("latency_p95_ms", "enqueue->start p95 (ms)", "{:.2f}"),
    ("latency_p99_ms", "enqueue->start p99 (ms)", "{:.2f}"),
    ("result_wait_p50_ms", "enqueue->result() returned p50 (ms, no-op job)", "{:.2f}"),
    ("result_wait_p99_ms", "enqueue->result() returned p99 (ms)", "{:.2f}"),
    ("worker_cpu_ms_per_job", "worker CPU per job (ms)", "{:.4f}"),
    ("postgres_cpu_ms_per_job", "Postgres backends CPU per job (ms)", "{:.4f}"),
    ("worker_cpu_ms_per_job_best", "worker CPU per job (ms, concurrency {best})", "{:.4f}"),
    ("postgres_cpu_ms_per_job_best", "Postgres CPU per job (ms, concurrency {best})", "{:.4f}"),
    ("machine_busy_pct", "machine busy during drain (% of all cores)", "{:.0f}"),
    ("enqueue_1row_notify_off_per_s", "1-row enqueue, {clients} clients, NOTIFY off (/s)", "{:,.0f}"),
    ("enqueue_1row_adaptive_per_s", "1-row enqueue, {clients} clients, adaptive NOTIFY (/s)", "{:,.0f}"),
    ("enqueue_1row_notify_always_per_s", "1-row enqueue, {clients} clients, a worker waiting (/s)", "{:,.0f}"),
    ("drain_small_backlog_per_s", "drain, rounds of a {small:,}-job backlog (jobs/s, c={best})", "{:,.0f}"),
    ("drain_large_backlog_per_s", "drain, a {backlog:,}-job backlog (jobs/s, c={best})", "{:,.0f}"),
    ("claim_ms_small_backlog", "claim of 250 over a {small:,}-job backlog (ms, EXPLAIN ANALYZE)", "{:.2f}"),
    ("claim_ms_large_backlog", "claim of 250 over a {backlog:,}-job backlog (ms, EXPLAIN ANALYZE)", "{:.2f}"),
    ("max_dead_tuples", "max n_dead_tup of pgsched.jobs during the backlog", "{:,.0f}"),
]


@cli.command()
@click.option("--runs", type=int, default=3, show_default=True, help="Runs per figure; the median is reported.")
@click.option("--jobs", type=int, default=20_000, show_default=True, help="Pre-enqueued no-op jobs to drain.")
@click.option("--concurrency", type=int, default=10, show_default=True, help="Worker concurrency.")
@click.option("--latency-samples", type=int, default=200, show_default=True)
@click.option("--clients", type=int, default=16, show_default=True, help="Clients of the single-row enqueue test.")
@click.option("--enqueue-seconds", type=float, default=3.0, show_default=True)
@click.option("--best-concurrency", type=int, default=100, show_default=True, help="Second drain's concurrency.")
@click.option("--backlog", type=int, default=200_000, show_default=True, help="Large backlog to drain.")
@click.option("--small-backlog", type=int, default=2_000, show_default=True, help="Backlog of the comparison.")
@click.option("--dsn", "server_dsn", help="Server to benchmark (scratch databases are created there).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def bench(
    ctx: CliContext,
    server_dsn: str | None,
    runs: int,
    jobs: int,
    concurrency: int,
    latency_samples: int,
    clients: int,
    enqueue_seconds: float,
    best_concurrency: int,
    backlog: int,
    small_backlog: int,
    as_json: bool,
) -> None:
    """Measure drain, enqueue and latency on a scratch database of the --dsn server (created and dropped)."""
    for name, value, low in (("runs", runs, 1), ("jobs", jobs, 1), ("latency-samples", latency_samples, 2),
                            ("concurrency", concurrency, 1), ("best-concurrency", best_concurrency, 1),
                            ("backlog", backlog, 1), ("small-backlog", small_backlog, 1)):  # fmt: skip
        if value < low:
            raise ValidationError(name, f"must be at least {low}")
    options = BenchOptions(
        server_dsn or ctx.dsn(), runs, jobs, concurrency, latency_samples, clients, enqueue_seconds,
        best_concurrency, backlog, small_backlog,
    )  # fmt: skip

    def progress(done: int, figures: dict[str, float]) -> None:
        if not as_json:
            summary = ", ".join(f"{k}={v:,.2f}" for k, v in figures.items())
            click.echo(f"run {done}/{runs}: {summary}", err=True)

    report = run_bench(options, progress=progress)
    if as_json:
        echo_json(report)
    else:
        _print(report)


def _print(report: dict[str, Any]) -> None:
    m, pg, opts = report["machine"], report["postgres"], report["options"]
    click.echo(f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB, {m['system']}, Python {m['python']}")
    click.echo(f"load average: before {_load(m['load_average'])}, after {_load(report['load_average_after'])}")
    click.echo(
        f"postgres: {pg.get('version')} (shared_buffers={pg.get('shared_buffers')}, "
        f"synchronous_commit={pg.get('synchronous_commit')}, fsync={pg.get('fsync')})"
    )
    click.echo(
        f"workload: {opts['jobs']:,} no-op jobs, one worker process, concurrency {opts['concurrency']}; "
        f"median of {opts['runs']} runs"
    )
    names = {"clients": opts["clients"], "concurrency": opts["concurrency"], "best": opts["best_concurrency"],
             "backlog": opts["backlog"], "small": opts["small_backlog"]}  # fmt: skip
    for key, label, fmt in _LABELS:
        if key in report["median"]:
            per_run = " ".join(fmt.format(r[key]) for r in report["runs"] if key in r)
            click.echo(f"  {label.format(**names):<60} {fmt.format(report['median'][key]):>10}   ({per_run})")
    _print_backlog(report)


def _print_backlog(report: dict[str, Any]) -> None:
    for index, detail in enumerate(report.get("details", []), 1):
        dead = " ".join(f"{t:.0f}s:{d}" for t, _, d in detail.get("dead_tuples", [])[::4])
        click.echo(f"  run {index} n_dead_tup over the backlog drain (every 2 s): {dead}")
    explains = report.get("details", [{}])[-1].get("claim_explains", [])
    if explains:
        plan = explains[0]["plan"]
        click.echo("  claim plan over the large backlog (last run, EXPLAIN ANALYZE BUFFERS, JSON top node):")
        click.echo("    " + _plan_line(plan.get("Plan", {}), 0).replace("\n", "\n    "))


def _plan_line(node: dict[str, Any], depth: int) -> str:
    line = (
        f"{'  ' * depth}{node.get('Node Type')} {node.get('Relation Name') or node.get('Index Name') or ''} "
        f"rows={node.get('Actual Rows')} time={node.get('Actual Total Time')}ms "
        f"hit={node.get('Shared Hit Blocks')} read={node.get('Shared Read Blocks')}"
    )
    children = [_plan_line(child, depth + 1) for child in node.get("Plans", [])]
    return "\n".join([line, *children])


def _load(value: Any) -> str:
    return "n/a" if not value else " ".join(f"{v:.2f}" for v in value)
