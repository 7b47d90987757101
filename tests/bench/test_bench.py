"""`pgsched bench` on small sizes: the private stock server, every drain variant, --dsn warnings, the soak.

Behaviour only (rows, states, counts, cleanup), never speed: the figures are the bench's business.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgsched.bench.drain import cold_drain
from pgsched.bench.enqueue import interleaved
from pgsched.bench.history import _load as _history_load
from pgsched.bench.probes import returned
from pgsched.bench.run import BenchOptions, _drains, medians, paired_ratios, same_run_ratios
from pgsched.bench.scratch import Databases, admin_dsn
from pgsched.bench.server import settings_report
from pgsched.bench.soak import Sample, summarize
from pgsched.bench.workers import PACKAGE, QUEUE, compile_package
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.cli.bench import _drain_table, _table
from pgsched.queries import query
from tests.support.plans import buffers_used

SMALL = ["--runs", "1", "--backlog", "2000", "--processes", "1", "--bulk-jobs", "1000", "--enqueue-samples", "20",
         "--latency-samples", "10", "--enqueue-seconds", "0.2"]  # fmt: skip
ENQUEUE_FIGURES = ("enqueue.single_p50_ms", "enqueue.many_1000_per_s", "enqueue.copy_per_s",
                   "enqueue.insert_select_per_s", "notify.off_per_s", "notify.waiting_per_s",
                   "latency.start_p99_ms", "latency.result_p99_ms")  # fmt: skip


def _databases(dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(admin_dsn(dsn), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]).fetchall()
    return [row[0] for row in rows]


@pytest.mark.slow
def test_bench_on_its_private_stock_server_drains_in_every_statistics_state(capsys: Any) -> None:
    code = run_cli(cli, ["bench", *SMALL, "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    server = report["server"]
    assert server["private"] is True
    assert (server["autovacuum"], server["synchronous_commit"], server["fsync"]) == ("on", "on", "on")
    assert report["warnings"] == []
    median = report["median"]
    for state in ("none", "after-load", "every-0.5s"):
        assert median[f"drain.{state}.1.jobs_per_s"] > 0
        assert median[f"drain.{state}.1.from_spawn_jobs_per_s"] > 0
    assert median["drain.none.1.analyzes"] == 0
    assert median["drain.after-load.1.analyzes"] == 1
    assert median["drain.every-0.5s.1.analyzes"] >= 1
    assert median["drain.after-load.1.worker_cpu_ms_per_job"] > 0
    for key in ENQUEUE_FIGURES:
        assert median[key] > 0, key


def test_bench_with_dsn_warns_where_the_server_differs_from_stock(dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(str(name))))

    report = settings_report(dsn)

    assert report.values["synchronous_commit"] == "off"
    assert any(w.startswith("synchronous_commit = off (stock: on)") for w in report.warnings)
    with psycopg.connect(dsn) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
    assert any(w.startswith("autovacuum") for w in report.warnings) == (autovacuum != ("on",))


def test_soak_prints_a_line_per_interval_and_drops_its_databases(dsn: str, capsys: Any) -> None:
    prefix = "pgsched_t_soak"
    argv = ["bench", "soak", "--dsn", dsn, "--db-prefix", prefix, "--minutes", "0.1", "--interval", "1",
            "--rate", "200", "--producers", "2", "--retention", "2"]  # fmt: skip

    code = run_cli(cli, argv)
    out = capsys.readouterr().out

    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) >= 4
    assert sum(int(line.split()[1].replace(",", "")) for line in lines) > 0  # jobs ran
    assert "rate 200 jobs/s (--rate)" in out
    assert "enqueue->start p99: first" in out
    assert " vac " in out  # the leader's vacuums of the live partitions, beside autovacuum's
    sizes = [line for line in out.splitlines() if line.strip().startswith("MB/dead:")]
    # each table's size, not only the sum
    assert sizes and all("jobs_queued" in line and "jobs_running" in line for line in sizes)
    assert _databases(dsn, prefix) == []


def test_soak_without_a_rate_runs_at_its_load_of_the_max_measured_with_producers_running(dsn: str, capsys: Any) -> None:
    """The default rate is --load of what the workers finish while the producers enqueue flat out (on this machine
    they share the cores), measured in a scratch database of its own that is dropped too."""
    prefix = f"pgsched_t_soakmax_{uuid.uuid4().hex[:8]}"
    argv = ["bench", "soak", "--dsn", dsn, "--db-prefix", prefix, "--minutes", "0.05", "--interval", "1",
            "--max-seconds", "2", "--load", "0.5", "--producers", "2", "--json"]  # fmt: skip

    code = run_cli(cli, argv)
    result = json.loads(capsys.readouterr().out)

    assert code == 0
    measured = result["measured_max_jobs_per_s"]
    assert measured > 0
    assert result["rate"] == pytest.approx(0.5 * measured)
    assert sum(s["jobs_per_s"] for s in result["samples"]) > 0  # the soak itself ran at that rate
    assert _databases(dsn, prefix) == []


def test_soak_refuses_a_partition_width_under_one_second(dsn: str, capsys: Any) -> None:
    code = run_cli(cli, ["bench", "soak", "--dsn", dsn, "--minutes", "0.1", "--partition-seconds", "0.5"])
    assert code == 2
    assert "partition-seconds" in capsys.readouterr().err


def test_history_loads_ids_in_finish_order_into_the_loaded_days_partitions_and_drops_its_databases(
    dsn: str, capsys: Any
) -> None:
    prefix = "pgsched_t_history"
    argv = ["bench", "history", "--dsn", dsn, "--db-prefix", prefix, "--finished", "3000", "--days", "3",
            "--backlog", "200", "--runs", "2", "--json"]  # fmt: skip

    code = run_cli(cli, argv)
    out = json.loads(capsys.readouterr().out)

    assert code == 0
    assert out["figures"]["history.finished"] == 3000
    assert len(out["drain_empty"]) == len(out["drain_loaded"]) == 2
    assert len(out["drop_day_ms"]) == 3 and len(out["page_ms"]) == 20
    assert _databases(dsn, prefix) == []


def test_history_load_makes_only_the_loaded_days_partitions_and_ids_rise_with_the_finish(dsn: str) -> None:
    databases = Databases(admin_dsn(dsn), "pgsched_t_hload")
    try:
        loaded = databases.clone("history")
        _history_load(loaded, 5000, 3)
        with psycopg.connect(loaded) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pgsched.history_partitions) AS parts,"
                "       (SELECT count(*) FROM pgsched.jobs_done_default) AS in_default,"
                "       (SELECT corr(id, extract(epoch FROM finished_at)) FROM pgsched.jobs) AS corr,"
                "       (SELECT count(*) FROM pgsched.jobs"
                "         WHERE purge_at = pgsched.purge_at(queue, state, finished_at)) AS kept_as_retention,"
                "       (SELECT max(id) FROM pgsched.jobs) AS top"
            ).fetchone()
            after = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('noop') RETURNING id").fetchone()
    finally:
        databases.drop_all()
    assert row is not None and after is not None
    parts, in_default, corr, kept_as_retention, top = row
    assert parts <= 3 + 2 and in_default == 0  # the loaded days (+ today's and one width), not 400 ahead
    assert corr > 0.99
    assert kept_as_retention == 5000  # each purge_at is the one the finish would have set
    assert top == 5000 and after[0] > top  # the id sequence goes on after the loaded ids


def _sample(at: float, size: int, statements: dict[str, tuple[str, int, float]]) -> Sample:
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    return Sample(at, 100.0, 1.0, 2.0, size, 0, 0, 0, 1.0, clock, statements)


def test_soak_summary_tells_a_growing_table_and_a_slowing_statement_from_flat_ones() -> None:
    growing = [_sample(10.0 * i, 1_000 * i, {"q": ("UPDATE x", 10 * i, 10.0 * i * i)}) for i in range(1, 10)]
    flat = [_sample(10.0 * i, 1_000, {"q": ("UPDATE x", 10 * i, 1.0 * i)}) for i in range(1, 10)]

    grows, stays = summarize(growing), summarize(flat)

    assert grows["size_growth_after_first_window_pct"] > 100
    assert stays["size_growth_after_first_window_pct"] == 0
    [slower] = grows["statements"]
    assert slower["last_mean_ms"] > slower["first_mean_ms"]
    assert slower["first_calls"] > 0 and slower["last_calls"] > 0  # each mean with its calls
    [same] = stays["statements"]
    assert same["last_mean_ms"] == pytest.approx(same["first_mean_ms"])


def test_soak_summary_gives_every_windows_mean_to_tell_a_first_window_step_from_a_slope() -> None:
    # Samples every 10 s, 30 s windows (a third of nine samples): "step" costs 1 ms a call in the first window and
    # 2 ms after; "slope" one more millisecond every window.
    def cumulative(mean_at: Callable[[int], float]) -> list[Sample]:
        samples, total = [], 0.0
        for i in range(1, 10):
            total += 10 * mean_at(i)
            samples.append(_sample(10.0 * i, 1_000, {"q": ("UPDATE x", 10 * i, total)}))
        return samples

    [step] = summarize(cumulative(lambda i: 1.0 if i <= 3 else 2.0))["statements"]
    [slope] = summarize(cumulative(lambda i: float((i - 1) // 3 + 1)))["statements"]

    assert step["window_means_ms"] == pytest.approx([1.0, 2.0, 2.0])
    assert slope["window_means_ms"] == pytest.approx([1.0, 2.0, 3.0])


def test_a_drains_ratio_is_the_median_of_each_runs_own_ratio_not_a_ratio_of_medians(capsys: Any) -> None:
    # A machine that drifts between runs: each run's after-load drain is 90 % of its own run's none, but the third
    # run was slow for none alone. The ratio of the medians (31 / 30) would say 103 %.
    rates = [
        {("none", 1): 40.0, ("after-load", 1): 36.0, ("after-load", 2): 54.0},
        {("none", 1): 30.0, ("after-load", 1): 27.0, ("after-load", 2): 27.0},
        {("none", 1): 20.0, ("after-load", 1): 31.0, ("after-load", 2): 62.0},
    ]
    runs: list[dict[str, float]] = []
    for run_rates in rates:
        run = paired_ratios(run_rates)
        for (stats, processes), rate in run_rates.items():
            stem = f"drain.{stats}.{processes}"
            run[f"{stem}.jobs_per_s"] = rate
            for name in ("from_first_jobs_per_s", "from_spawn_jobs_per_s", "first_job_s", "analyzes", "autoanalyzes"):
                run[f"{stem}.{name}"] = 1.0
        runs.append(run)

    assert runs[0]["drain.after-load.1.vs_none"] == pytest.approx(0.9)
    assert runs[0]["drain.after-load.2.vs_one"] == pytest.approx(1.5)
    assert "drain.after-load.2.vs_none" not in runs[0]  # several processes are compared with one, in their state
    report = {"median": medians(runs), "runs": runs}
    _drain_table(report, "states", [("after-load", "drain.after-load.1", "drain.after-load.1.vs_none")], "% of none")
    _drain_table(report, "processes", [("2", "drain.after-load.2", "drain.after-load.2.vs_one")], "% of one")
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert rows == [["jobs/s", "(DB)", "%"], ["after-load", "31", "90"], ["jobs/s", "(DB)", "%"], ["2", "54", "150"]]


def test_the_bulk_paths_take_turns_at_going_first_and_each_reports_its_median_round() -> None:
    # The first pass of a round runs slower (measured; likely the previous pass's dirty buffers and WAL): in a fixed
    # order one path would always pay for it. Each path's rates come from a queue of its own, so the median taken
    # is visibly its own.
    order: list[str] = []
    given = {"calls": [10.0, 30.0, 20.0], "copy": [100.0, 90.0, 95.0], "series": [7.0, 9.0, 8.0]}

    def path(name: str) -> Callable[[], float]:
        def run() -> float:
            order.append(name)
            return given[name].pop(0)

        return run

    figures = interleaved({name: path(name) for name in given}, 3)

    assert order == ["calls", "copy", "series", "copy", "series", "calls", "series", "calls", "copy"]
    assert figures == {"calls": 20.0, "copy": 95.0, "series": 8.0}


def test_an_enqueue_paths_share_is_the_median_of_each_runs_own_ratio(capsys: Any) -> None:
    # One COPY is 90 % of its run's INSERT ... SELECT in every run, but the third run's ceiling was slow: the ratio of
    # the medians (180 / 190) would say 95 %. Calls of 1,000 are 80 % of their run's COPY; NOTIFY off has no rate in
    # the last run (no share is made of a missing or zero reference).
    runs = [
        same_run_ratios(figures) | figures
        for figures in (
            {"enqueue.insert_select_per_s": 200.0, "enqueue.copy_per_s": 180.0, "enqueue.many_1000_per_s": 144.0,
             "notify.off_per_s": 10.0, "notify.waiting_per_s": 9.0},
            {"enqueue.insert_select_per_s": 220.0, "enqueue.copy_per_s": 198.0, "enqueue.many_1000_per_s": 158.4,
             "notify.off_per_s": 10.0, "notify.waiting_per_s": 8.0},
            {"enqueue.insert_select_per_s": 190.0, "enqueue.copy_per_s": 171.0, "enqueue.many_1000_per_s": 136.8,
             "notify.off_per_s": 0.0, "notify.waiting_per_s": 8.0},
        )
    ]  # fmt: skip

    assert runs[0]["enqueue.copy_per_s.vs_reference"] == pytest.approx(0.9)
    assert "notify.waiting_per_s.vs_reference" not in runs[2]
    assert "enqueue.insert_select_per_s.vs_reference" not in runs[0]  # the ceiling is no share of anything
    report = {"median": medians(runs), "runs": runs}
    _table(report, "enqueue", [("ceiling", "enqueue.insert_select_per_s", "{:,.0f}"),
                               ("copy", "enqueue.copy_per_s", "{:,.0f}"),
                               ("calls", "enqueue.many_1000_per_s", "{:,.0f}"),
                               ("waiting", "notify.waiting_per_s", "{:,.0f}")], "% of row above")  # fmt: skip
    rows = [line.split()[:3] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert rows == [["ceiling", "200", "[200"], ["copy", "180", "90"], ["calls", "144", "80"], ["waiting", "8", "85"]]


def test_the_start_probe_stamps_an_enqueue_when_the_call_returns_not_when_it_starts() -> None:
    done_at: list[float] = []

    def slow_enqueue() -> int:
        time.sleep(0.05)
        done_at.append(time.time())
        return 7

    job_id, stamped = returned(slow_enqueue)
    assert job_id == 7
    assert stamped >= done_at[0]


def test_no_drain_is_the_first_of_every_run() -> None:
    options = BenchOptions(processes=(1, 2, 4))
    plans = [_drains(options, index) for index in range(5)]

    assert len({plan[0] for plan in plans}) == 5
    assert all(sorted(plan) == sorted(plans[0]) for plan in plans)
    assert sorted(plans[0]) == sorted([("none", 1), ("after-load", 1), ("every-0.5s", 1), ("after-load", 2),
                                       ("after-load", 4)])  # fmt: skip


def test_the_bench_compiles_the_package_so_a_cold_worker_compiles_no_module_of_it(tmp_path: Any) -> None:
    # A copy without bytecode, as a fresh editable checkout is; the worker's imports in a fresh interpreter under
    # PYTHONDONTWRITEBYTECODE=1 (this machine's setting), which prints "code object from <source>" per compiled module.
    package = tmp_path / "pgsched"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(os.path.dirname(PACKAGE), "sql"), tmp_path / "sql")
    imports = "import pgsched.cli, pgsched.bench.tasks, pgsched.worker.runtime"

    def compiled_from_source() -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([sys.executable, "-v", "-c", imports], cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        assert f"{package}{os.sep}cli{os.sep}__init__.py" in done.stderr  # the copy is what was imported
        return [line for line in done.stderr.splitlines() if line.startswith(f"# code object from {package}")]

    assert len(compiled_from_source()) > 30
    assert compile_package(str(package))
    assert compiled_from_source() == []
    (package / "clock.py").write_text((package / "clock.py").read_text() + "\n# edited\n")
    os.utime(package / "clock.py", (1, 1))  # a source whose time differs from its bytecode's: recompiled, not trusted
    assert compiled_from_source() == [f"# code object from {package / 'clock.py'}"]


def test_a_cold_drain_with_two_worker_processes_runs_every_job_once(dsn: str) -> None:
    databases = Databases(admin_dsn(dsn), "pgsched_t_drain")
    try:
        result = cold_drain(databases, backlog=500, processes=2, concurrency=5, stats="after-load")
    finally:
        databases.drop_all()

    assert (result.processes, result.jobs, result.analyzes) == (2, 500, 1)  # cold_drain checks 500 succeeded
    assert result.jobs_per_s > 0 and result.from_spawn_jobs_per_s > 0
    assert _databases(dsn, "pgsched_t_drain") == []


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                continue  # gone meanwhile
    return pids


@pytest.mark.slow
def test_a_soak_stopped_by_sigterm_stops_its_workers_and_drops_its_databases(dsn: str) -> None:
    prefix = f"pgsched_t_term_{uuid.uuid4().hex[:8]}"  # this run's own: no other run's process or database matches
    argv = [sys.executable, "-m", "pgsched", "bench", "soak", "--dsn", dsn, "--db-prefix", prefix, "--minutes", "5",
            "--interval", "1", "--rate", "200", "--producers", "1"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as bench:
        try:
            assert bench.stdout is not None
            for line in bench.stdout:  # the first sample: producers and the worker are running
                if line.strip()[:1].isdigit():
                    break
            workers = [pid for pid in _processes_naming(prefix) if pid != bench.pid]
            assert workers, "the soak's worker process was not found"
            bench.send_signal(signal.SIGTERM)
            assert bench.wait(timeout=60) != 0
        finally:
            if bench.poll() is None:
                bench.kill()
    assert [pid for pid in workers if pid in _processes_naming(prefix)] == []
    assert _databases(dsn, prefix) == []


def _pending(conn: psycopg.Connection[Any]) -> tuple[bool, int]:
    """bench_pending's answer, and the shared buffers one look read (EXPLAIN ANALYZE, rolled back)."""
    text = query("bench_pending")
    params = {"queue": QUEUE}
    answer = conn.execute(text, params).fetchone()
    plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {text}", params).fetchone()
    assert answer is not None and plan is not None
    return bool(answer[0]), buffers_used(plan[0][0]["Plan"])


def test_the_drain_wait_reads_a_few_buffers_mid_drain_and_sees_every_live_job(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": 20_000})
        # Mid-drain: the front half claimed and finished (rows moved out of jobs_queued; their index entries stay).
        conn.execute(
            "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now(), started_at = now(), attempt = 1"
            " WHERE id IN (SELECT id FROM pgsched.jobs WHERE state = 'queued' ORDER BY id LIMIT 10000)"
        )
        pending, buffers = _pending(conn)
        assert pending and buffers < 20, buffers  # from the front: every claimed job's entry (~1,800 buffers at 72,000)

        conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE state = 'queued'")
        assert _pending(conn)[0] is False
        for hold in ("state = 'queued', concurrency_key = 'k'", "state = 'running', lease = 1, started_at = now()"):
            conn.execute(
                f"UPDATE pgsched.jobs SET finished_at = NULL, {hold} WHERE id = (SELECT max(id) FROM pgsched.jobs)"
            )
            assert _pending(conn)[0] is True, hold
            conn.execute(
                "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now(), concurrency_key = NULL, lease = NULL"
                " WHERE id = (SELECT max(id) FROM pgsched.jobs)"
            )
        assert _pending(conn)[0] is False


def test_cron_counts_each_instant_fired_once_by_a_cold_leader_and_drops_its_databases(dsn: str, capsys: Any) -> None:
    prefix = "pgsched_t_cron"
    argv = ["bench", "cron", "--dsn", dsn, "--db-prefix", prefix, "--schedules", "5", "--seconds", "3",
            "--runs", "1", "--json"]  # fmt: skip

    code = run_cli(cli, argv)
    out = json.loads(capsys.readouterr().out)

    assert code == 0
    run = out["runs"][0]
    assert run["cron.due"] == 15
    assert 0 < run["cron.fired"] <= run["cron.due"]
    assert run["cron.double_fires"] == 0
    assert 0 <= run["cron.late_p50_ms"] <= run["cron.late_p99_ms"] <= run["cron.late_max_ms"]
    assert _databases(dsn, prefix) == []


def test_cron_lateness_percentiles_never_pass_the_max(conn: psycopg.Connection[Any]) -> None:
    """Fires all 257.157 ms late: percentile_cont, interpolating between equal values in double precision, came out
    at 257.15700000000004 ms against a max of 257.157 (a CI run)."""
    conn.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('late', '* * * * *', 'noop')")
    conn.execute(
        "INSERT INTO pgsched.jobs (task, schedule_id, run_at, created_at)"
        " SELECT 'noop', s.id, t.at, t.at + interval '257.157 ms'"
        "   FROM pgsched.schedules s, (SELECT now() - g * interval '1 s' AS at FROM generate_series(1, 7) g) t"
    )
    span = {"start": datetime(2000, 1, 1, tzinfo=UTC), "end": datetime(3000, 1, 1, tzinfo=UTC)}
    row = conn.execute(query("bench_cron_fired"), span).fetchone()
    assert row is not None and row["fired"] == 7
    assert row["late_p50_ms"] <= row["late_p99_ms"] <= row["late_max_ms"], row
    assert row["late_max_ms"] == pytest.approx(257.157)


def test_cron_refuses_no_schedules(dsn: str, capsys: Any) -> None:
    assert run_cli(cli, ["bench", "cron", "--dsn", dsn, "--schedules", "0"]) == 2
    assert "schedules" in capsys.readouterr().err


def test_workflows_times_creation_and_each_drain_kind_and_drops_its_databases(dsn: str, capsys: Any) -> None:
    prefix = "pgsched_t_flows"
    argv = ["bench", "workflows", "--dsn", dsn, "--db-prefix", prefix, "--runs", "1", "--chains", "100",
            "--fan-out", "20", "--rounds", "1", "--json"]  # fmt: skip

    code = run_cli(cli, argv)
    out = json.loads(capsys.readouterr().out)

    assert code == 0
    run = out["runs"][0]
    assert run["create.fan_out_ms"] > 0 and run["create.enqueue_many_ms"] > 0
    assert all(run[f"drain.{kind}.jobs_per_s"] > 0 for kind in ("plain", "chains", "plain-without-0012"))
    assert out["medians"] == run
    assert _databases(dsn, prefix) == []
