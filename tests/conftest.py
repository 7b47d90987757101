"""Test kit: a migrated template database per session, a fresh clone of it per test.

Real PostgreSQL always (see tests/support/pgserver.py for which server); never a mock. bin/test runs the tests
in two pytest processes (pytest-xdist): each has its own template, and ``alone`` keeps wall-clock bounds honest.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pytest_postgresql.janitor import DatabaseJanitor

from pgsched import Pgsched, Settings
from pgsched.migrate import Migrator
from tests.support.pgserver import Server, find_server

FAST_SETTINGS = {"lease_seconds": 3.0, "heartbeat_seconds": 0.5, "poll_seconds": 0.5}
# Tests that assert wall-clock bounds under faults run with no other test of the run beside them.
ALONE_MARKERS = ("alone", "acceptance")


@pytest.fixture(autouse=True)
def alone_or_beside_others(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In an xdist worker: an ``alone`` test holds the run's lock file exclusively, any other test shares it.

    Taken before the test's other fixtures and released after their teardown. A waiting ``alone`` test holds
    the turn file, so the other process starts no new test meanwhile (else it could wait for ever).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    run = tmp_path_factory.getbasetemp().parent  # the run's folder, shared by its workers
    alone = any(request.node.get_closest_marker(name) for name in ALONE_MARKERS)
    with (run / "alone.turn").open("a") as turn, (run / "alone.lock").open("a") as lock:
        fcntl.flock(turn, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(turn, fcntl.LOCK_UN)
        yield


@pytest.fixture(scope="session")
def pg_server() -> Server:
    return find_server()


@pytest.fixture(scope="session")
def pg_template(pg_server: Server) -> Iterator[str]:
    name = f"pgsched_tmpl_{os.getpid()}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname=name,
        as_template=True,
    )
    janitor.init()
    Migrator(pg_server.dsn(name)).migrate()
    yield name
    janitor.drop()


class Clones:
    """Databases cloned from the template, one made ahead: the next test's clone is made while this test runs, and a
    finished test's clone is dropped meanwhile too. A clone costs 0.3-1 s of server time (most of it copying the
    catalogs), for each of the suite's ~1,000 tests. One thread, so clones and drops run one at a time, in order."""

    def __init__(self, server: Server, template: str) -> None:
        self._server = server
        self._template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clones")
        self._next: Future[str] = self._thread.submit(self._create)
        self._drops: list[Future[None]] = []

    def _janitor(self, name: str) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self._server.user,
            host=self._server.host,
            port=self._server.port,
            password=self._server.password,
            dbname=name,
            template_dbname=self._template,
        )

    def _create(self) -> str:
        name = f"pgsched_t_{uuid.uuid4().hex[:12]}"
        self._janitor(name).init()
        return name

    def take(self) -> str:
        """A fresh clone (an error making it is raised here); the next one is started at once."""
        ready, self._next = self._next, self._thread.submit(self._create)
        return ready.result()

    def drop(self, name: str) -> None:
        """Drop a clone in the background (its connections are ended first); a failure is raised at ``close``."""
        self._drops = [d for d in self._drops if not d.done() or d.exception() is not None]
        self._drops.append(self._thread.submit(self._janitor(name).drop))

    def close(self) -> None:
        spare = self._next.result()
        self._thread.submit(self._janitor(spare).drop).result()
        self._thread.shutdown(wait=True)
        for dropped in self._drops:
            dropped.result()


@pytest.fixture(scope="session")
def clones(pg_server: Server, pg_template: str) -> Iterator[Clones]:
    made = Clones(pg_server, pg_template)
    yield made
    made.close()


@pytest.fixture
def dsn(pg_server: Server, clones: Clones) -> Iterator[str]:
    """A fresh database cloned from the migrated template."""
    name = clones.take()
    try:
        yield pg_server.dsn(name)
    finally:
        clones.drop(name)


@pytest.fixture
def empty_dsn(pg_server: Server) -> Iterator[str]:
    """A fresh database with no pgsched schema, for migration tests."""
    name = f"pgsched_e_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, password=pg_server.password, dbname=name
    )
    janitor.init()
    try:
        yield pg_server.dsn(name)
    finally:
        janitor.drop()


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def settings(dsn: str) -> Settings:
    return Settings(dsn=dsn, **FAST_SETTINGS)


@pytest.fixture
def app(settings: Settings) -> Iterator[Pgsched]:
    application = Pgsched(settings=settings)
    yield application
    application.close()


@pytest.fixture
async def async_app(settings: Settings) -> AsyncIterator[Pgsched]:
    application = Pgsched(settings=settings)
    yield application
    await application.aclose()
