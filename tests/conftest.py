"""Test kit: a migrated template database per session, a fresh clone of it per test.

Real PostgreSQL always (see tests/support/pgserver.py for which server); never a mock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pytest_postgresql.janitor import DatabaseJanitor

from pgsched import Pgsched, Settings
from pgsched.migrate import Migrator
from tests.support.pgserver import Server, find_server

FAST_SETTINGS = {"lease_seconds": 3.0, "heartbeat_seconds": 0.5, "poll_seconds": 0.5}


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


@pytest.fixture
def dsn(pg_server: Server, pg_template: str) -> Iterator[str]:
    """A fresh database cloned from the migrated template."""
    name = f"pgsched_t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname=name,
        template_dbname=pg_template,
    )
    janitor.init()
    try:
        yield pg_server.dsn(name)
    finally:
        janitor.drop()


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
