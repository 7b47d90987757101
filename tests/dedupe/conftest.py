"""Redis for the dedupe tests: the machine's server for plain cases, a private one to break."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from pgsched import Settings
from tests.support.pgserver import Server
from tests.support.processes import free_port
from tests.support.waiting import wait_until


@dataclass
class OwnRedis:
    """A redis-server of this test only: stop, pause, resume or flush it freely."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary on this machine")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = OwnRedis(port, proc)
    client = redis.Redis(port=port)
    wait_until(lambda: _pings(client), timeout=10, message="redis-server did not start")
    yield server
    server.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def shared_redis_url() -> str:
    url = "redis://127.0.0.1:6379/0"
    if not _pings(redis.Redis.from_url(url, socket_timeout=1)):
        pytest.skip("no Redis at 127.0.0.1:6379")
    return url


def cached_settings(settings: Settings, url: str, *, timeout: float = 0.5) -> Settings:
    """Settings with a cache in a namespace of its own (tests share Redis servers).

    The default timeout is roomy so a loaded CI machine does not turn hits into (correct but
    unexpected) fallbacks; the tests that break Redis pass the production-like 50 ms.
    """
    return settings.with_(redis_url=url, redis_namespace=f"test-{uuid.uuid4().hex[:10]}", redis_timeout_seconds=timeout)


@dataclass
class Blackhole:
    """A TCP server that accepts connections and reads requests but never answers (a hung Redis)."""

    port: int
    listener: socket.socket
    connections: list[socket.socket] = field(default_factory=list)
    requests: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.requests += 1


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    hole = Blackhole(int(listener.getsockname()[1]), listener)
    thread = threading.Thread(target=hole.serve, daemon=True)
    thread.start()
    yield hole
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    for conn in hole.connections:
        conn.close()
    thread.join(5)


@pytest.fixture
def second_dsn(pg_server: Server, pg_template: str, dsn: str) -> Iterator[str]:
    """Another migrated database on the same cluster as ``dsn`` (same system identifier, other name)."""
    name = f"pgsched_t2_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(pg_template))
        )
    try:
        yield pg_server.dsn(name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
