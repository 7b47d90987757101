"""``pgsched bench`` and ``pgsched bench soak``: figures as tables (median, then each run), or ``--json``.

Interface layer: parses options, formats the report of ``pgsched.bench``; measures nothing itself.
Without ``--dsn`` both start a private embedded server with stock settings (the global --dsn and
PGSCHED_DSN are ignored on purpose: a benchmark must say which server it ran on).
"""

from __future__ import annotations

import logging
import signal
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import click

from pgsched.bench.cron import cron_run
from pgsched.bench.history import history_bench
from pgsched.bench.run import STATS_STATES, BenchOptions, bench_server, run_bench
from pgsched.bench.scratch import DEFAULT_PREFIX, Databases, admin_dsn
from pgsched.bench.soak import Sample, SoakOptions, soak
from pgsched.bench.workflows import DRAIN_KINDS, creation_cost, drain_rate
from pgsched.cli.base import cli, echo_json
from pgsched.errors import ValidationError

__all__ = ["bench"]

Row = tuple[str, str, str]  # label, figure key, format

_dsn_option = click.option("--dsn", help="Measure this server instead of a private stock one (scratch databases).")
_prefix_option = click.option("--db-prefix", default=DEFAULT_PREFIX, show_default=True, help="Scratch-database prefix.")
_F = TypeVar("_F", bound=Callable[..., Any])
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _option(flag: str, default: float, help_text: str) -> Callable[[_F], _F]:
    """A numeric option whose type is its default's."""
    return click.option(flag, type=type(default), default=default, show_default=True, help=help_text)


def _quiet() -> None:
    """The private server's start and the scratch migrations are not news in a benchmark's output. A SIGTERM
    (kill, a CI timeout) ends the bench as Ctrl-C does: its worker processes, scratch databases and private server
    are stopped on the way out; by default the signal ended the bench at once and left them running."""
    for name in ("pgsched.embedded", "pgsched.migrate"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ValidationError(name, f"must be at least {low}")


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValidationError("processes", f"expected comma-separated counts, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValidationError("processes", "every count must be at least 1")
    return values


@cli.group(invoke_without_command=True)
@_dsn_option
@_prefix_option
@_option("--runs", 3, "Runs; each figure's median and every run.")
@_option("--backlog", 100_000, "No-op jobs queued before workers start.")
@_option("--concurrency", 10, "Concurrency of each worker process.")
@click.option("--processes", default="1,2,4", show_default=True, help="Worker process counts (statistics after load).")
@click.option("--stats", "stats_states", default=",".join(STATS_STATES), show_default=True,
              help="Statistics states of the one-process drain.")  # fmt: skip
@_option("--bulk-jobs", 20_000, "Rows of each bulk enqueue path.")
@_option("--enqueue-samples", 500, "Single enqueue calls timed.")
@_option("--latency-samples", 200, "Enqueue->start probes.")
@_option("--clients", 16, "Clients of the single-row NOTIFY test.")
@_option("--enqueue-seconds", 3.0, "Length of each NOTIFY variant.")
@_json_option
@click.pass_context
def bench(ctx: click.Context, dsn: str | None, db_prefix: str, runs: int, backlog: int, concurrency: int,
          processes: str, stats_states: str, bulk_jobs: int, enqueue_samples: int, latency_samples: int,
          clients: int, enqueue_seconds: float, as_json: bool) -> None:  # fmt: skip
    """Cold-worker drains per statistics state and process count, enqueue paths, NOTIFY, CPU per job."""
    if ctx.invoked_subcommand is not None:
        return
    _quiet()
    for name, value, low in (("runs", runs, 1), ("backlog", backlog, 1), ("concurrency", concurrency, 1),
                             ("bulk-jobs", bulk_jobs, 1_000), ("enqueue-samples", enqueue_samples, 2),
                             ("latency-samples", latency_samples, 2), ("clients", clients, 1)):  # fmt: skip
        _at_least(name, value, low)
    states = tuple(s.strip() for s in stats_states.split(",") if s.strip())
    if not states or set(states) - set(STATS_STATES):
        raise ValidationError("stats", f"choose among {', '.join(STATS_STATES)}")
    options = BenchOptions(dsn, db_prefix, runs, backlog, concurrency, _counts(processes), states, bulk_jobs,
                           enqueue_samples, latency_samples, clients, enqueue_seconds)  # fmt: skip

    def progress(done: int, figures: dict[str, float]) -> None:
        if not as_json:
            click.echo(f"run {done}/{runs} done ({len(figures)} figures)", err=True)

    report = run_bench(options, progress=progress)
    if as_json:
        echo_json(report)
    else:
        _print(report)


def _print(report: dict[str, Any]) -> None:
    m, server, opts = report["machine"], report["server"], report["options"]
    click.echo(f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB, {m['system']}, Python {m['python']}")
    click.echo(f"load average: before {_load(m['load_average'])}, after {_load(report['load_average_after'])}")
    _print_server(server, report["warnings"])
    click.echo(f"median of {opts['runs']} runs (each run in brackets)")
    backlog, c = opts["backlog"], opts["concurrency"]
    _drain_table(report, f"stats states: one cold worker process (concurrency {c}), {backlog:,}-job backlog",
                 [(s, f"drain.{s}.1", f"drain.{s}.1.vs_none") for s in opts["stats_states"]], "% of none")  # fmt: skip
    _drain_table(report, f"cold worker processes (concurrency {c} each, statistics after load), {backlog:,} jobs",
                 [(f"{n} process{'es' if n > 1 else ''}", f"drain.after-load.{n}",
                   f"drain.after-load.{n}.vs_one" if n > 1 else None)
                  for n in opts["processes"]], "% of one")  # fmt: skip
    _table(report, "CPU per job (one process, statistics after load), ms", [
        ("worker process", "drain.after-load.1.worker_cpu_ms_per_job", "{:.4f}"),
        ("its PostgreSQL backends", "drain.after-load.1.postgres_cpu_ms_per_job", "{:.4f}"),
    ], "")  # fmt: skip
    _table(report, "dead tuples per drained job (one process, statistics after load)", [
        ("every partition", "drain.after-load.1.dead_tuples_per_job", "{:.2f}"),
        ("jobs_queued (the claim's table)", "drain.after-load.1.claim_path_dead_tuples_per_job", "{:.2f}"),
        ("jobs_running", "drain.after-load.1.running_dead_tuples_per_job", "{:.2f}"),
    ], "")  # fmt: skip
    _table(report, f"enqueue ({opts['bulk_jobs']:,} rows per bulk path, jobs/s)", [
        ("single enqueue call p50 (ms, warm app)", "enqueue.single_p50_ms", "{:.3f}"),
        ("single enqueue call p99 (ms)", "enqueue.single_p99_ms", "{:.3f}"),
        ("INSERT ... SELECT generate_series (ceiling)", "enqueue.insert_select_per_s", "{:,.0f}"),
        ("enqueue_many, one call (one COPY)", "enqueue.copy_per_s", "{:,.0f}"),
        ("enqueue_many, calls of 1,000", "enqueue.many_1000_per_s", "{:,.0f}"),
    ], "% of row above")  # fmt: skip
    _table(report, f"single-row enqueue, {opts['clients']} clients, /s", [
        ("notifications off", "notify.off_per_s", "{:,.0f}"),
        ("adaptive, nobody waiting", "notify.adaptive_per_s", "{:,.0f}"),
        ("a worker waiting", "notify.waiting_per_s", "{:,.0f}"),
    ], "% of off")  # fmt: skip
    _table(report, "idle listening worker, ms", [
        ("enqueue returned -> task started p50", "latency.start_p50_ms", "{:.2f}"),
        ("enqueue returned -> task started p99", "latency.start_p99_ms", "{:.2f}"),
        ("enqueue -> result() returned p50 (no-op job)", "latency.result_p50_ms", "{:.2f}"),
        ("enqueue -> result() returned p99", "latency.result_p99_ms", "{:.2f}"),
    ], "")  # fmt: skip


def _drain_table(report: dict[str, Any], title: str, rows: Sequence[tuple[str, str, str | None]], ratio: str) -> None:
    """Jobs/s by the database (first start to last finish), its ratio to the reference drain (the median of each
    run's own ratio), wall-clock rates, start-up, ANALYZEs."""
    median, runs = report["median"], report["runs"]
    present = [row for row in rows if f"{row[1]}.jobs_per_s" in median]
    if not present:
        return
    click.echo(f"\n{title}")
    click.echo(f"  {'':<14} {'jobs/s (DB)':>11} {ratio:>10} {'wall, 1st job':>13} {'from spawn':>10} "
               f"{'1st job s':>9} {'ANALYZE':>7} {'auto':>4}  per run (DB)")  # fmt: skip
    for label, key, ratio_key in present:
        rate, paired = median[f"{key}.jobs_per_s"], 1.0 if ratio_key is None else median.get(ratio_key)
        share = f"{100.0 * paired:.0f}" if paired is not None else "-"
        per_run = " ".join(f"{run[f'{key}.jobs_per_s']:,.0f}" for run in runs if f"{key}.jobs_per_s" in run)
        click.echo(f"  {label:<14} {rate:>11,.0f} {share:>10} {median[f'{key}.from_first_jobs_per_s']:>13,.0f} "
                   f"{median[f'{key}.from_spawn_jobs_per_s']:>10,.0f} {median[f'{key}.first_job_s']:>9.2f} "
                   f"{median[f'{key}.analyzes']:>7.0f} {median[f'{key}.autoanalyzes']:>4.0f}  [{per_run}]")  # fmt: skip


def _print_server(server: dict[str, Any], warnings: Sequence[str]) -> None:
    where = "private embedded server, stock settings" if server.get("private") else "--dsn server"
    click.echo(
        f"postgres {server.get('version')} ({where}): autovacuum={server.get('autovacuum')}, "
        f"synchronous_commit={server.get('synchronous_commit')}, fsync={server.get('fsync')}, "
        f"shared_buffers={server.get('shared_buffers')}, pg_stat_statements "
        f"{'loaded' if server.get('statements_loaded') else 'not loaded'}"
    )
    for warning in warnings:
        click.echo(f"WARNING: {warning}")


def _table(report: dict[str, Any], title: str, rows: Sequence[Row], ratio_label: str) -> None:
    """Each figure's median and runs; a figure compared with another of its run (``REFERENCES``) also shows the
    median of its runs' own ratios."""
    median, runs = report["median"], report["runs"]
    present = [row for row in rows if row[1] in median]
    if not present:
        return
    click.echo(f"\n{title}")
    for label, key, fmt in present:
        share = median.get(f"{key}.vs_reference")
        ratio = "" if share is None else f"{100.0 * share:.0f} {ratio_label}"
        per_run = " ".join(fmt.format(run[key]) for run in runs if key in run)
        click.echo(f"  {label:<46} {fmt.format(median[key]):>10}  {ratio:<18} [{per_run}]")


def _load(value: Any) -> str:
    return "n/a" if not value else " ".join(f"{v:.2f}" for v in value)


@bench.command("soak")
@_dsn_option
@_prefix_option
@_option("--minutes", 20.0, "Length of the soak.")
@click.option("--rate", type=float, default=None, help="Enqueue rate (jobs/s); default: --load x measured max.")
@_option("--load", 0.6, "Fraction of the measured max: jobs/s finished while the producers enqueue flat out.")
@_option("--producers", 4, "Producer threads.")
@_option("--workers", 1, "Worker processes (leader candidates).")
@_option("--concurrency", 10, "Concurrency of each worker.")
@_option("--interval", 10.0, "Seconds between report lines.")
@_option("--retention", 60.0, "Seconds succeeded jobs are kept.")
@_option("--max-seconds", 20.0, "Length of the max measurement (after a 5 s warm-up).")
@click.option("--partition-seconds", type=float, default=None,
              help="Width of the time partitions of finished jobs (default: the product's, 1 day; retention "
                   "drops whole partitions, so a short --retention wants narrow ones).")  # fmt: skip
@_json_option
def soak_command(dsn: str | None, db_prefix: str, minutes: float, rate: float | None, load: float, producers: int,
                 workers: int, concurrency: int, interval: float, retention: float, max_seconds: float,
                 partition_seconds: float | None, as_json: bool) -> None:  # fmt: skip
    """Steady enqueue at ~60 % of the max while workers drain, autovacuum on; a line every --interval s."""
    for name, value, low in (("minutes", minutes, 0.01), ("producers", producers, 1), ("workers", workers, 1),
                             ("concurrency", concurrency, 1), ("interval", interval, 0.1),
                             ("retention", retention, 1.0), ("max-seconds", max_seconds, 1.0),
                             ("rate", rate or 1.0, 1.0), ("load", load, 0.01),
                             ("partition-seconds", partition_seconds or 1.0, 1.0)):  # fmt: skip
        _at_least(name, value, low)
    _quiet()
    options = SoakOptions(minutes, rate, load, producers, workers, concurrency, interval, retention, max_seconds,
                          partition_seconds)  # fmt: skip
    with bench_server(dsn, statements=True) as server:
        if not as_json:
            _print_server({"private": server.private, **server.settings.values}, server.settings.warnings)
            click.echo(f"{'t (s)':>7} {'jobs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'size MB':>8} {'dead':>9} "
                       f"{'autovac':>7} {'vac':>5} {'enq ms':>7}")  # fmt: skip
        databases = Databases(admin_dsn(server.dsn), db_prefix)
        try:
            result = soak(databases, options, statements=server.settings.statements_loaded,
                          emit=(lambda s: None) if as_json else _print_sample)  # fmt: skip
        finally:
            databases.drop_all()
    if as_json:
        samples = [{k: v for k, v in asdict(s).items() if k not in ("statements", "clock")} for s in result["samples"]]
        echo_json(
            {**result, "samples": samples, "server": server.settings.values, "warnings": server.settings.warnings}
        )
    else:
        _print_summary(result)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_sample(s: Sample) -> None:
    click.echo(f"{s.at:>7.1f} {s.jobs_per_s:>9,.0f} {_ms(s.p50_ms):>8} {_ms(s.p99_ms):>8} "
               f"{s.total_bytes / 1e6:>8.1f} {s.dead:>9,} {s.autovacuums:>7} {s.vacuums:>5} "
               f"{_ms(s.enqueue_call_ms):>7}")  # fmt: skip
    sizes = [f"{name} {size / 1e6:.2f}/{dead}" for name, (size, dead) in s.relations.items() if size >= 65_536]
    if sizes:
        click.echo(f"{'':>7} MB/dead: {', '.join(sizes)}")


def _print_summary(result: dict[str, Any]) -> None:
    summary = result["summary"]
    measured = result["measured_max_jobs_per_s"]
    source = (
        f"{result['rate'] / measured:.0%} of {measured:,.0f} jobs/s, the max with producers running"
        if measured
        else "--rate"
    )
    click.echo(f"\nrate {result['rate']:,.0f} jobs/s ({source})")
    if not summary:
        click.echo("no samples: the soak was shorter than one interval")
        return
    w = summary["window_s"]
    growth = summary["size_growth_after_first_window_pct"]
    click.echo(f"size: max {summary['size_first_window_max_bytes'] / 1e6:.1f} MB in the first {w:.0f} s, "
               f"max {summary['size_after_max_bytes'] / 1e6:.1f} MB after ({growth:+.1f} %): "
               f"{'flat' if growth <= 10 else 'still growing'}")  # fmt: skip
    click.echo(f"enqueue->start p99: first {w:.0f} s {_ms(summary['p99_first_ms'])} ms, "
               f"last {w:.0f} s {_ms(summary['p99_last_ms'])} ms")  # fmt: skip
    click.echo(f"producer enqueue call (bench's own timing): first {_ms(summary['enqueue_call_first_ms'])} ms, "
               f"last {_ms(summary['enqueue_call_last_ms'])} ms")  # fmt: skip
    if summary["statements"]:
        click.echo("statement mean times (pg_stat_statements), first window -> last window, ms (calls):")
        for s in summary["statements"][:15]:
            click.echo(f"  {s['first_mean_ms']:>8.3f} -> {s['last_mean_ms']:>8.3f}  "
                       f"({s['first_calls']:,} -> {s['last_calls']:,})  {s['query']}")  # fmt: skip
            if len(s["window_means_ms"]) > 2:
                means = ("-" if m is None else f"{m:.3f}" for m in s["window_means_ms"])
                click.echo(f"            every {w:.0f} s: {' -> '.join(means)}")


@bench.command("workflows")
@_dsn_option
@_prefix_option
@_option("--runs", 5, "Runs; each drain kind once per run, in rotating order.")
@_option("--fan-out", 1_000, "Jobs of the fan-out whose creation is timed (plus its callback).")
@_option("--rounds", 15, "Creations timed per path (median).")
@_option("--chains", 10_000, "Two-step chains of the chain drain (the plain drains use as many jobs).")
@_option("--processes", 1, "Worker processes of each drain.")
@_option("--concurrency", 10, "Concurrency of each worker.")
@_json_option
def workflows_command(dsn: str | None, db_prefix: str, runs: int, fan_out: int, rounds: int, chains: int,
                      processes: int, concurrency: int, as_json: bool) -> None:  # fmt: skip
    """Workflow creation against enqueue_many; chain drain and plain drain with and without migration 0012."""
    limits = (("runs", runs, 1), ("fan-out", fan_out, 1), ("rounds", rounds, 1), ("chains", chains, 1),
              ("processes", processes, 1), ("concurrency", concurrency, 1))  # fmt: skip
    for name, value, low in limits:
        _at_least(name, value, low)
    _quiet()
    jobs = int(chains) * 2

    def one_run(databases: Databases, index: int) -> dict[str, float]:
        figures = creation_cost(databases.clone(f"create{index}"), n=int(fan_out), rounds=int(rounds))
        order = DRAIN_KINDS[index % 3 :] + DRAIN_KINDS[: index % 3]  # no kind always first
        for kind in order:
            figures[f"drain.{kind}.jobs_per_s"] = drain_rate(
                databases, kind, jobs=jobs, processes=int(processes), concurrency=int(concurrency)
            )
        figures["drain.chains_vs_plain"] = figures["drain.chains.jobs_per_s"] / figures["drain.plain.jobs_per_s"]
        figures["drain.plain_vs_without_0012"] = (
            figures["drain.plain.jobs_per_s"] / figures["drain.plain-without-0012.jobs_per_s"]
        )
        return figures

    rows = [
        ("create: group of --fan-out + callback (ms)", "create.fan_out_ms", "{:.1f}"),
        ("create: enqueue_many of --fan-out (ms)", "create.enqueue_many_ms", "{:.1f}"),
        ("create: fan-out / enqueue_many (target <= 2)", "create.ratio", "{:.2f}"),
        ("drain: two-step chains (jobs/s)", "drain.chains.jobs_per_s", "{:,.0f}"),
        ("drain: plain (jobs/s)", "drain.plain.jobs_per_s", "{:,.0f}"),
        ("drain: plain without 0012 (jobs/s)", "drain.plain-without-0012.jobs_per_s", "{:,.0f}"),
        ("drain: chains / plain (target >= 0.5)", "drain.chains_vs_plain", "{:.2f}"),
        ("drain: plain / without 0012 (target 0.97-1.03)", "drain.plain_vs_without_0012", "{:.3f}"),
    ]
    _run_and_report(dsn, db_prefix, int(runs), one_run, rows, as_json)


@bench.command("cron")
@_dsn_option
@_prefix_option
@_option("--schedules", 100, "Schedules firing every second.")
@_option("--seconds", 30, "Whole seconds counted, from the leader's first fire.")
@_option("--runs", 3, "Runs, each on a fresh database with a cold leader.")
@click.option("--timezone", default="Europe/Paris", show_default=True, help="The schedules' time zone.")
@_json_option
def cron_command(dsn: str | None, db_prefix: str, schedules: int, seconds: int, runs: int, timezone: str,
                 as_json: bool) -> None:  # fmt: skip
    """One cold leader (`pgsched scheduler`) and many every-second schedules: instants fired, double fires, lateness."""
    for name, value, low in (("schedules", schedules, 1), ("seconds", seconds, 1), ("runs", runs, 1)):
        _at_least(name, value, low)
    _quiet()

    def one_run(databases: Databases, index: int) -> dict[str, float]:
        target = databases.clone(f"cron{index}")
        figures = cron_run(target, schedules=int(schedules), seconds=int(seconds), timezone=timezone)
        databases.drop(target)
        return figures

    rows = [
        ("instants due (schedules x seconds)", "cron.due", "{:,.0f}"),
        ("jobs fired", "cron.fired", "{:,.0f}"),
        ("fired / due", "cron.fired_share", "{:.3f}"),
        ("double fires (target 0)", "cron.double_fires", "{:,.0f}"),
        ("fire lateness p50 (ms)", "cron.late_p50_ms", "{:.1f}"),
        ("fire lateness p99 (ms)", "cron.late_p99_ms", "{:.1f}"),
        ("fire lateness max (ms)", "cron.late_max_ms", "{:.1f}"),
    ]
    _run_and_report(dsn, db_prefix, int(runs), one_run, rows, as_json)


def _run_and_report(
    dsn: str | None,
    db_prefix: str,
    runs: int,
    one_run: Callable[[Databases, int], dict[str, float]],
    rows: Sequence[tuple[str, str, str]],
    as_json: bool,
) -> None:
    """On the bench's server, ``one_run(databases, index)`` ``runs`` times (every scratch database dropped after),
    then each figure's median and runs, a line per row (label, figure, format), or all of it as JSON."""
    per_run: list[dict[str, float]] = []
    with bench_server(dsn) as server:
        databases = Databases(admin_dsn(server.dsn), db_prefix)
        try:
            for index in range(runs):
                per_run.append(one_run(databases, index))
                if not as_json:
                    click.echo(f"run {index + 1}/{runs} done", err=True)
        finally:
            databases.drop_all()
    medians = {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}
    if as_json:
        echo_json({"medians": medians, "runs": per_run, "server": server.settings.values,
                   "warnings": server.settings.warnings})  # fmt: skip
        return
    _print_server({"private": server.private, **server.settings.values}, server.settings.warnings)
    for label, key, fmt in rows:
        each = " ".join(fmt.format(r[key]) for r in per_run)
        click.echo(f"{label:<48} {fmt.format(medians[key]):>10}   runs: {each}")


@bench.command("history")
@_dsn_option
@_prefix_option
@_option("--finished", 1_000_000, "Finished jobs bulk-loaded into the history (one-day time partitions).")
@_option("--days", 7, "Days of history (and of retention) they are spread over.")
@_option("--backlog", 100_000, "No-op jobs of each drain (one cold worker process, concurrency 10).")
@_option("--runs", 3, "Drains on each side, alternating empty / loaded.")
@_json_option
def history_command(dsn: str | None, db_prefix: str, finished: int, days: int, backlog: int, runs: int,
                    as_json: bool) -> None:  # fmt: skip
    """A long history of finished jobs: drain vs an empty history, reads of finished jobs, disk, dropping a day."""
    for name, value, low in (("finished", finished, 1), ("days", days, 1), ("backlog", backlog, 1), ("runs", runs, 1)):
        _at_least(name, value, low)
    _quiet()
    with bench_server(dsn) as server:
        databases = Databases(admin_dsn(server.dsn), db_prefix)
        try:
            result = history_bench(databases, finished=int(finished), days=int(days), backlog=int(backlog),
                                   runs=int(runs))  # fmt: skip
        finally:
            databases.drop_all()
    figures = result.figures()
    if as_json:
        echo_json({"figures": figures, "drain_empty": result.drain_empty, "drain_loaded": result.drain_history,
                   "page_ms": result.page_ms, "drop_day_ms": result.drop_day_ms,
                   "server": server.settings.values, "warnings": server.settings.warnings})  # fmt: skip
        return
    _print_server({"private": server.private, **server.settings.values}, server.settings.warnings)
    for key, figure in figures.items():
        click.echo(f"{key:48} {figure:,.3f}")
    click.echo(f"drains, jobs/s: empty {[round(r) for r in result.drain_empty]}, "
               f"loaded {[round(r) for r in result.drain_history]}")  # fmt: skip
    click.echo(f"first pages, ms: {[round(r, 1) for r in result.page_ms]}")
    click.echo(f"day drops, ms: {[round(r, 1) for r in result.drop_day_ms]}")
