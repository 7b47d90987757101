"""Drain rate through a transaction-mode PgBouncer against the direct one, in the same run.

Run it with ``bin/pooler-bench [--jobs 20000] [--workers 2] [--runs 3] [--port 24500]``. It starts a private
PostgreSQL cluster with stock settings (initdb; autovacuum on) on ``--port`` and a real PgBouncer
(``pool_mode = transaction``, ``default_pool_size = 10``) on ``--port + 1``, both under a temporary folder,
and stops both at the end. Each round queues ``--jobs`` no-op jobs (``enqueue_many``) in a fresh database and
times ``--workers`` fresh ``pgsched worker`` processes (concurrency 10) from the first job's start to an empty queue,
once per variant, the variants alternating and taking turns at going first (a round leaves the cluster's
checkpoint and autovacuum work to the next): ``direct`` (PGSCHED_DSN on PostgreSQL), ``pooled`` (PGSCHED_DSN
on PgBouncer, no session DSN: the fallback, polling and no prepared statements) and ``pooled+session``
(PGSCHED_DSN on PgBouncer, PGSCHED_SESSION_DSN on PostgreSQL). Prints jobs/s per run and the medians.
On a shared machine read them as ratios taken in one run, with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from pgsched import Pgsched, Settings
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE, wait_until_drained, wait_until_started, worker_processes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.acceptance.replication import pg_bindir  # noqa: E402 - the test kit's server lookup
from tests.support.pgbouncer import pgbouncer_in_front_of  # noqa: E402 - the test kit's real PgBouncer


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _cluster(folder: Path, port: int) -> Path:
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql")
    data = folder / "data"
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n")
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"), "-w", "start"]),
                   check=True, capture_output=True)  # fmt: skip
    return bindir


def _round(databases: Databases, variant: str, pooled_port: int, jobs: int, workers: int) -> float:
    direct = databases.clone(variant.replace("+", "_"))
    app = Pgsched(settings=Settings(dsn=direct))
    try:
        for start in range(0, jobs, 5000):
            app.enqueue_many([{"task": "noop", "queue": QUEUE} for _ in range(min(5000, jobs - start))])
    finally:
        app.close()
    pooled = psycopg.conninfo.make_conninfo(direct, port=pooled_port)
    dsn = direct if variant == "direct" else pooled
    env = {"PGSCHED_SESSION_DSN": direct} if variant == "pooled+session" else {}
    env["PGSCHED_POLL_SECONDS"] = "0.5"
    with psycopg.connect(direct, autocommit=True) as conn, worker_processes(dsn, workers, env=env) as procs:
        wait_until_started(conn, procs)
        began = time.perf_counter()
        wait_until_drained(conn, procs, timeout=600)
        elapsed = time.perf_counter() - began
    databases.drop(direct)
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=24500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pgsched-pooler-bench-"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    bindir = _cluster(folder, args.port)
    admin = f"host=127.0.0.1 port={args.port} user=postgres dbname=postgres"
    databases = Databases(admin, prefix="pgsched_pooler_bench")
    variants = ("direct", "pooled", "pooled+session")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    try:
        with pgbouncer_in_front_of(admin, pool_size=10) as through:
            pooled_port = int(str(psycopg.conninfo.conninfo_to_dict(through)["port"]))
            for run in range(args.runs):
                for variant in variants[run % 3 :] + variants[: run % 3]:  # each variant goes first once in 3
                    rate = _round(databases, variant, pooled_port, args.jobs, args.workers)
                    rates[variant].append(rate)
                    print(f"run {run + 1} {variant}: {rate:.0f} jobs/s  (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        databases.drop_all()
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    medians = {v: statistics.median(r) for v, r in rates.items()}
    summary = {**{f"{v}.median_jobs_per_s": round(m) for v, m in medians.items()},
               **{f"{v}.vs_direct": round(medians[v] / medians["direct"], 2) for v in variants[1:]},
               "runs": rates}  # fmt: skip
    print(json.dumps(summary, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
