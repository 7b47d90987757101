"""A private primary and streaming standby (``initdb``, ``pg_basebackup -R``) for the failover scenario.

Never touches the machine's shared server: both data directories live under a fresh /tmp folder,
both servers listen on 127.0.0.1 on a private port pair (``PGSCHED_FAILOVER_PORTS``, default
24460-24479, below the kernel's ephemeral ports, so no client socket or ``bind(0)`` beside it takes one)
and run as the ``postgres`` system user when we are root. ``dsn`` lists both hosts
with ``target_session_attrs=read-write``, the multi-host DSN an application would be given.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.support.waiting import wait_until

__all__ = ["Node", "ReplicatedPair", "initialized", "pg_bindir", "private_folder", "replicated_pair", "reserved_ports"]

_USER = "postgres"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", _USER, "--", *argv] if os.geteuid() == 0 else argv


class ServerCommandFailed(subprocess.CalledProcessError):
    """A failed server command whose message carries its stderr and the tail of the server's log."""

    def __init__(self, done: subprocess.CompletedProcess[str], argv: list[str], log: Path | None) -> None:
        super().__init__(done.returncode, argv, done.stdout, done.stderr)
        self.log_tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}\nserver log:\n{self.log_tail}"


def _run(argv: list[str], timeout: float = 120, log: Path | None = None) -> None:
    done = subprocess.run(_as_postgres(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ServerCommandFailed(done, argv, log)


def _free(port: int) -> bool:
    """Whether a server could bind ``port`` now, as PostgreSQL binds it (SO_REUSEADDR): a listener or a client
    socket using the port as its local one makes it taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def reserved_ports(count: int, span: str | None = None) -> Iterator[list[int]]:
    """``count`` consecutive free ports of ``span`` (default ``PGSCHED_FAILOVER_PORTS``, else 24460-24479),
    reserved while open by a lock file under /tmp: a killed server's port looks free until it is started
    again, so concurrent runs (two worktrees' ``bin/chaos``) must not rely on a probe alone."""
    span = span or os.environ.get("PGSCHED_FAILOVER_PORTS") or "24460-24479"
    low, high = (int(p) for p in span.split("-"))
    for first in range(low, high - count + 2, count):
        with open(f"/tmp/pgsched-ports-{first}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            ports = list(range(first, first + count))
            if all(_free(p) for p in ports):
                yield ports
                return
    raise RuntimeError(f"no {count} free ports in {low}-{high}")


@dataclass
class Node:
    """One server: its data directory, port and pg_ctl."""

    bindir: Path
    data: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={_USER} dbname=postgres"

    def pg_ctl(self, *args: str) -> None:
        log = self.data / "server.log"
        _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(log), *args], log=log)

    def start(self) -> None:
        self.pg_ctl("-w", "-t", "90", "start")

    def kill(self) -> None:
        """``stop -m immediate``: every backend is gone at once, nothing is flushed (a crash of the host)."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("-m", "fast", "-w", "stop")

    def promote(self) -> None:
        self.pg_ctl("-w", "-t", "90", "promote")

    def configure(self, **settings: Any) -> None:
        lines = "".join(f"{k} = '{v}'\n" for k, v in settings.items())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row, connect_timeout=5)

    def one(self, sql: str, params: Any = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(sql, params).fetchone()
        assert row is not None
        return next(iter(row.values()))


@dataclass
class ReplicatedPair:
    primary: Node
    standby: Node
    sync: bool

    @property
    def dsn(self) -> str:
        """Both hosts, the primary first (as an application lists them), read-write sessions only."""
        ports = f"{self.primary.port},{self.standby.port}"
        return f"host=127.0.0.1,127.0.0.1 port={ports} user={_USER} dbname=postgres target_session_attrs=read-write"

    def streaming(self) -> bool:
        want = "sync" if self.sync else "async"
        sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = %s"
        return bool(self.primary.one(sql, [want]))


def private_folder(prefix: str) -> Path:
    """A fresh folder under /tmp that the server's system user can use."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, _USER, _USER)
    return folder


def initialized(bindir: Path, data: Path, port: int, **settings: Any) -> Node:
    """A new cluster in ``data`` (trust authentication, stock settings but ``settings``), not started."""
    node = Node(bindir, data, port)
    _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", _USER, "--no-sync"])
    node.configure(port=port, unix_socket_directories=str(data.parent), **settings)
    return node


@contextlib.contextmanager
def replicated_pair(*, sync: bool) -> Iterator[ReplicatedPair]:
    """A running primary with one streaming standby (synchronous when ``sync``); both stopped and removed on exit."""
    bindir = pg_bindir()
    assert bindir is not None, "no PostgreSQL server binaries under /usr/lib/postgresql"
    folder = private_folder("pgsched-failover-")
    stack = contextlib.ExitStack()
    ports = stack.enter_context(reserved_ports(2))
    first, second = ports
    standby = Node(bindir, folder / "standby", second)
    primary = Node(bindir, folder / "primary", first)
    pair = ReplicatedPair(primary, standby, sync)
    try:
        initialized(
            bindir,
            primary.data,
            first,
            listen_addresses="127.0.0.1",
            wal_level="replica",
            max_wal_senders=5,
            max_connections=200,
            recovery_init_sync_method="syncfs",
            # Sync: a commit returns once the standby has flushed it ('*': any standby). Async: at once.
            synchronous_standby_names="*" if sync else "",
        )
        primary.start()
        backup = ["-D", str(standby.data), "-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1", "-p", str(first)]
        _run([str(bindir / "pg_basebackup"), *backup, "-U", _USER, "--no-sync"])
        # Once promoted, the standby stands alone: with the primary's '*' it would wait for a standby forever.
        standby.configure(port=second, synchronous_standby_names="")
        standby.start()
        wait_until(pair.streaming, timeout=60, interval=0.1, message="the standby did not stream")
        yield pair
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)
        stack.close()
