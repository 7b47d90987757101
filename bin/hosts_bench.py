"""Many worker hosts: 1, 2, 4, 8 ``pgsched worker`` processes, each on a host of its own, drain one backlog.

Run it as root with ``bin/hosts-bench [--processes 1,2,4,8] [--backlog 20000] [--concurrency 10] [--runs 3]``.
Each worker runs in a network namespace of its own (a veth pair, address 10.231.<i>.2, the server seen at
10.231.<i>.1) and a UTS namespace of its own (hostname ``worker-host-<i>``), so no two share an address or
a host name; every worker is also a leader candidate. The server is a private PostgreSQL with stock
settings (autovacuum on), started under /tmp on a port of 24480-24499, never the machine's shared one.

The workers start first; once every one is registered, idle and listening, the backlog is inserted in
one statement (a warm drain: a cold one would time eight interpreters starting on two cores). Per drain
it reports the rate (the database's first start to last finish), the CPU per job of the workers
and of their PostgreSQL backends, the machine's busy share while draining, the wait events of active
pgsched backends (sampled every 20 ms: ``CPU`` when running, else the event), connections per worker
process, distinct hosts and client addresses in ``pgsched.workers`` / ``pg_stat_activity``, and leaders.
With ``--kill-one`` a last drain SIGKILLs one worker mid-drain: its jobs must come back through the
reaper of a leader on another host. Prints one JSON line per drain, then medians per process count.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgsched.bench.facts import machine_busy_ticks
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import (
    QUEUE,
    cpu_seconds,
    wait_until_drained,
    wait_until_started,
    wait_until_waiting,
    worker_processes,
)
from pgsched.queries import query
from tests.acceptance.replication import initialized, pg_bindir, private_folder, reserved_ports

NET = "10.231"
_TAG = f"{os.getpid() % 10000}"

_WAITS = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event, count(*) AS n
  FROM pg_stat_activity WHERE application_name LIKE 'pgsched:%' AND state = 'active' GROUP BY 1
"""
_SPREAD = """
SELECT (SELECT count(DISTINCT host) FROM pgsched.workers) AS hosts,
       (SELECT count(*) FROM pgsched.workers) AS registered,
       (SELECT count(*) FROM pgsched.workers WHERE is_leader) AS leaders,
       (SELECT count(DISTINCT client_addr) FROM pg_stat_activity WHERE application_name LIKE 'pgsched:%') AS addrs,
       (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgsched:%') AS connections
"""
# The claim statements (plain and limited queues) of the drain's database since the reset.
_CLAIMS = """
SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(rows), 0)::bigint AS rows,
       coalesce(sum(total_exec_time), 0)::float8 AS ms
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
 WHERE d.datname = current_database() AND s.query ILIKE '%%skip locked%%'
"""
_LOST = """SELECT count(*) FROM pgsched.jobs WHERE errors @> '[{"kind": "worker_lost"}]'"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[str]]:
    """``count`` network namespaces, each joined to this one by a veth pair; yields their names."""
    names: list[str] = []
    try:
        for i in range(count):
            ns, outer, inner = f"pgsched-h{_TAG}-{i}", f"pgs{_TAG}h{i}a", f"pgs{_TAG}h{i}b"
            _ip("netns", "add", ns)
            names.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{NET}.{i}.1/24", "dev", outer)
            _ip("link", "set", outer, "up")
            for args in (["addr", "add", f"{NET}.{i}.2/24", "dev", inner], ["link", "set", inner, "up"],
                         ["link", "set", "lo", "up"]):  # fmt: skip
                _ip("netns", "exec", ns, "ip", *args)
        yield names
    finally:
        for ns in names:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)  # takes its end of the veth pair, and so the pair, with it


@contextlib.contextmanager
def private_server() -> Iterator[tuple[str, int]]:
    """A stock private PostgreSQL listening on every address (trust for the namespaces' network)."""
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries under /usr/lib/postgresql")
    folder = private_folder("pgsched-hosts-")
    with reserved_ports(1, "24480-24499") as (port,):  # apart from the failover scenario's ports
        node = initialized(
            bindir, folder / "data", port, listen_addresses="*", max_connections=200,
            shared_preload_libraries="pg_stat_statements",  # claim statistics; the bench soak loads it too
        )  # fmt: skip
        with (node.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {NET}.0.0/16 trust\n")
        node.start()
        try:
            with psycopg.connect(make_conninfo(node.dsn, dbname="template1"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # in every database made later
            yield node.dsn, port
        finally:
            node.stop()
            subprocess.run(["rm", "-rf", str(folder)], check=False)


def _placement(namespaces: Sequence[str], dsn: str) -> Any:
    def place(i: int) -> tuple[list[str], str]:
        script = 'hostname "$0" && exec "$@"'
        prefix = ["ip", "netns", "exec", namespaces[i], "unshare", "--uts", "sh", "-c", script, f"worker-host-{i}"]
        return prefix, make_conninfo(dsn, host=f"{NET}.{i}.1")

    return place


class Sampler:
    """Samples the wait events of active pgsched backends, and the spread once the workers are all in."""

    def __init__(self, dsn: str, processes: int) -> None:
        self.events: collections.Counter[str] = collections.Counter()
        self.spread: dict[str, int] = {}
        self._dsn, self._processes = dsn, processes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                for event, n in conn.execute(_WAITS).fetchall():
                    self.events[event] += n
                row = conn.execute(_SPREAD).fetchone()
                if row is not None and row[1] >= self._processes:  # all registered: keep the largest counts seen
                    seen = zip(["hosts", "registered", "leaders", "addrs", "connections"], row, strict=True)
                    self.spread = {k: max(v, self.spread.get(k, 0)) for k, v in seen}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _leaders(conn: psycopg.Connection[Any]) -> int:
    """Leaders once one was elected (every worker is a candidate; the election takes a moment)."""
    deadline = time.monotonic() + 15
    while True:
        row = conn.execute("SELECT count(*) FROM pgsched.workers WHERE is_leader").fetchone()
        if (row and row[0]) or time.monotonic() > deadline:
            return int(row[0]) if row else 0
        time.sleep(0.1)


def drain(databases: Databases, namespaces: Sequence[str], processes: int, args: argparse.Namespace,
          *, kill_one: bool = False) -> dict[str, Any]:  # fmt: skip
    """Workers first (all registered, idle and listening), then the backlog in one statement: the drain
    measures running workers, not interpreters starting up on the same two cores."""
    dsn = databases.clone(f"h{processes}_{time.monotonic_ns() % 10**6}")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            place = _placement(namespaces, dsn)
            with worker_processes(
                dsn, processes, concurrency=args.concurrency, scheduler=True, placement=place
            ) as started:
                procs = list(started)
                wait_until_waiting(conn, procs)
                leaders = _leaders(conn)
                sampler = Sampler(dsn, processes)
                conn.execute("SELECT pg_stat_statements_reset()")
                cpu0, busy0 = cpu_seconds(conn, procs), machine_busy_ticks()
                conn.execute(query("bench_insert_series"), {"queue": QUEUE, "n": args.backlog})
                if kill_one:
                    wait_until_started(conn, procs)
                    os.kill(procs[0].pid, signal.SIGKILL)
                    procs = procs[1:]
                wait_until_drained(conn, procs, timeout=max(600.0, args.backlog / 50))
                cpu1, busy1 = cpu_seconds(conn, procs), machine_busy_ticks()
                sampler.stop()
            done, seconds = conn.execute(query("bench_drain_window"), {"queue": QUEUE}).fetchone() or (0, 0.0)
            lost = conn.execute(_LOST).fetchone()
            claims = conn.execute(_CLAIMS).fetchone() or (0, 0, 0.0)
    finally:
        databases.drop(dsn)
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) if busy0 and busy1 else 0.0
    total = sum(sampler.events.values()) or 1
    if kill_one:  # the CPU and rate figures of a drain that lost a worker mean nothing
        return {"processes": processes, "killed_one": True, "jobs": int(done), "of": args.backlog,
                "worker_lost_requeues": int(lost[0]) if lost else 0, "leaders_at_end": leaders}  # fmt: skip
    return {
        "processes": processes,
        "jobs": int(done),
        "jobs_per_s": round(done / seconds, 1) if seconds else None,
        "worker_cpu_ms_per_job": round((cpu1[0] - cpu0[0]) * 1000 / args.backlog, 4),
        "postgres_cpu_ms_per_job": round((cpu1[1] - cpu0[1]) * 1000 / args.backlog, 4),
        "machine_busy": round(busy, 3) if busy is not None else None,
        "waits": {k: round(v / total, 3) for k, v in sampler.events.most_common(6)},
        "claims": int(claims[0]),
        "claim_rows_per_call": round(claims[1] / max(1, claims[0]), 2),
        "claim_ms_per_call": round(claims[2] / max(1, claims[0]), 3),
        "claim_ms_per_job": round(claims[2] / args.backlog, 4),
        "connections_per_process": round(sampler.spread.get("connections", 0) / processes, 2),
        **{k: v for k, v in sampler.spread.items() if k not in ("connections", "leaders")},
        "leaders_max_seen": sampler.spread.get("leaders", 0),
        "leaders_at_end": leaders,
        "worker_lost_requeues": int(lost[0]) if lost else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--kill-one", action="store_true", help="one more drain at the largest count, one worker killed"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bin/hosts-bench needs root (ip netns, unshare --uts)")
    counts = [int(c) for c in args.processes.split(",")]
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    results: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    with private_server() as (admin, _port), hosts(max(counts)) as namespaces:
        databases = Databases(admin, prefix="pgsched_hosts")
        try:
            for _ in range(args.runs):
                for n in counts:  # rotating the counts within each run spreads the machine's noise over all
                    result = drain(databases, namespaces, n, args)
                    results[n].append(result)
                    print(json.dumps(result), flush=True)
            if args.kill_one:
                print(json.dumps(drain(databases, namespaces, max(counts), args, kill_one=True)), flush=True)
        finally:
            for name in list(databases.created):
                databases.drop(databases.dsn(name))
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    for n, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("jobs_per_s", "worker_cpu_ms_per_job",
               "postgres_cpu_ms_per_job", "machine_busy")}  # fmt: skip
        print(json.dumps({"processes": n, "runs": len(rs), "median": med}), flush=True)


if __name__ == "__main__":
    main()
