"""Cold `pgsched worker` processes for the bench (and a `pgsched scheduler`), and the CPU the workers and their
PostgreSQL backends use.

Interface-side tool. The workers are real subprocesses started after the backlog exists, as a
deployment starts them; CPU is read from /proc (the worker's and its backends', found through
``application_name`` ``pgsched:<role>:<pid>``).
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from pgsched.bench.facts import process_cpu_seconds
from pgsched.errors import ConfigurationError
from pgsched.queries import query

__all__ = [
    "QUEUE",
    "Placement",
    "compile_package",
    "cpu_seconds",
    "scheduler_process",
    "wait_for",
    "wait_until_drained",
    "wait_until_started",
    "wait_until_waiting",
    "worker_processes",
]

QUEUE = "bench"
APP = "pgsched.bench.tasks:app"
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # pgsched/


def _argv(dsn: str, concurrency: int, scheduler: bool) -> list[str]:
    argv = [sys.executable, "-m", "pgsched", "--dsn", dsn, "--log-level", "WARNING", "worker", "--app", APP,
            "--queues", QUEUE, "--concurrency", str(concurrency), "--grace", "5"]  # fmt: skip
    return argv if scheduler else [*argv, "--no-scheduler"]


# Where worker i runs: a command prefix that execs the worker (e.g. ``ip netns exec ...``), and its DSN.
Placement = Callable[[int], tuple[Sequence[str], str]]


@contextlib.contextmanager
def worker_processes(
    dsn: str,
    count: int,
    *,
    concurrency: int = 10,
    scheduler: bool = False,
    env: Mapping[str, str] | None = None,
    placement: Placement | None = None,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` worker processes now; SIGTERM (then SIGKILL) them on exit.

    ``placement`` puts worker i elsewhere (its prefix must exec the worker, so that the process id stays the
    worker's)."""
    argvs = []
    for i in range(count):
        prefix, target = placement(i) if placement is not None else ((), dsn)
        argvs.append([*prefix, *_argv(target, concurrency, scheduler)])
    with _started(argvs, env) as procs:
        yield procs


@contextlib.contextmanager
def scheduler_process(dsn: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start one ``pgsched scheduler`` process (a leader candidate: cron, reaper, pruner) now; stop it on exit."""
    argv = [sys.executable, "-m", "pgsched", "--dsn", dsn, "--log-level", "WARNING", "scheduler"]
    with _started([argv], None) as procs:
        yield procs[0]


@functools.cache
def compile_package(root: str = PACKAGE) -> bool:
    """Write the bytecode of every pgsched module that lacks it, as ``pip install`` does for a deployed package;
    whether all of it is there now. A cold worker of an editable checkout under ``PYTHONDONTWRITEBYTECODE=1``
    (this machine's setting) would otherwise compile its ~70 modules at every start (about 0.15 s of CPU a process
    here), a cost no deployment pays. Fresh files are skipped; a stale one is recompiled, at its next import
    too, so the bytecode never runs code other than the source."""
    return bool(compileall.compile_dir(root, quiet=2))


@contextlib.contextmanager
def _started(argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start a process per argv now (the package compiled first: ``compile_package``); SIGTERM (then SIGKILL) them
    on exit. Their stderr goes to temporary files, echoed only for a process that failed: a clean stop's
    "stopping: ..." line is not news in a benchmark's output."""
    compile_package()
    environment = {**os.environ, **(env or {})}
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in argvs]
        try:
            for argv, log in zip(argvs, logs, strict=True):
                procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log, env=environment))
            yield procs
        finally:
            _stop(procs)
            for proc, log in zip(procs, logs, strict=False):
                if proc.returncode != 0:
                    log.seek(0)
                    sys.stderr.write(log.read().decode(errors="replace"))


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(conn: psycopg.Connection[Any], procs: Sequence[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """(worker processes, their PostgreSQL backends) CPU seconds so far."""
    workers = backends = 0.0
    for proc in procs:
        workers += process_cpu_seconds(proc.pid) or 0.0
        pids = [row[0] for row in conn.execute(query("bench_backend_pids"), {"pid": proc.pid}).fetchall()]
        backends += sum(process_cpu_seconds(pid) or 0.0 for pid in pids)
    return workers, backends


def wait_for(
    conn: psycopg.Connection[Any],
    procs: Sequence[subprocess.Popen[bytes]],
    name: str,
    *,
    want: bool = True,
    params: Mapping[str, Any] | None = None,
    timeout: float,
    every: float,
    failure: str,
) -> None:
    """Run the bench query ``name`` (one boolean) every ``every`` seconds until it answers ``want``; raise
    ConfigurationError (``failure``) past ``timeout``, or as soon as one of ``procs`` has exited."""
    deadline = time.monotonic() + timeout
    while conn.execute(query(name), params or {}).fetchone() != (want,):
        for proc in procs:
            if proc.poll() is not None:
                raise ConfigurationError(f"a bench process exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise ConfigurationError(failure)
        time.sleep(every)


def wait_until_started(
    conn: psycopg.Connection[Any], procs: Sequence[subprocess.Popen[bytes]], timeout: float = 120.0
) -> None:
    """Return once a job has started (the first worker is up and claiming)."""
    wait_for(
        conn, procs, "bench_started", timeout=timeout, every=0.002, failure="no bench worker started a job in time"
    )


def wait_until_drained(conn: psycopg.Connection[Any], procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """Return once no job of the bench queue is queued or running: looked at every 10 ms (bench_pending reads a few
    buffers; the drain rates are timed by the database, the wall-clock ones to within a look)."""
    wait_for(conn, procs, "bench_pending", want=False, params={"queue": QUEUE}, timeout=timeout, every=0.01,
             failure="the backlog did not drain in time")  # fmt: skip


def wait_until_waiting(
    conn: psycopg.Connection[Any], procs: Sequence[subprocess.Popen[bytes]], timeout: float = 60.0
) -> None:
    """Return once every worker process is registered, idle and listening on the bench queue."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        wait_for(conn, procs, "bench_worker_waiting", params={"queue": QUEUE, "pid": proc.pid},
                 timeout=max(0.0, deadline - time.monotonic()), every=0.02,
                 failure="a bench worker did not become idle in time")  # fmt: skip
