"""The pytest plugin (entry point ``pytest11``): fixtures for a migrated throwaway database.

Once per session a template database is created and migrated; every test gets a fresh clone of it
(``CREATE DATABASE ... TEMPLATE``, milliseconds) that is dropped afterwards. The server comes from
``--pgsched-server`` or ``PGSCHED_TEST_DSN`` (a DSN whose user may create databases), else
``postgresql://postgres@127.0.0.1:5432/postgres``. Importing this module costs nothing else.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgsched.app import Pgsched
from pgsched.config import Settings
from pgsched.migrate import Migrator

if TYPE_CHECKING:
    from pytest_postgresql.janitor import DatabaseJanitor

__all__ = ["pgsched_app", "pgsched_dsn", "pgsched_settings", "pgsched_template", "pytest_addoption"]

_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# Short intervals so that crash detection and polling happen within a test's patience.
_FAST = {"lease_seconds": 3.0, "heartbeat_seconds": 0.5, "poll_seconds": 0.5}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pgsched-server",
        default=None,
        help="DSN of a PostgreSQL server where pgsched fixtures create databases (env PGSCHED_TEST_DSN).",
    )


def _janitor(server: str, name: str, *, template: str | None = None) -> DatabaseJanitor:
    from pytest_postgresql.janitor import DatabaseJanitor  # the testing extra: pgsched[testing]

    params = conninfo_to_dict(server)
    if "," in str(params.get("host", "")) + str(params.get("port", "")):
        raise pytest.UsageError("the pgsched test server DSN must name one server, not several hosts")
    password = params.get("password")
    return DatabaseJanitor(
        user=str(params.get("user", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=int(str(params.get("port", 5432))),
        password=None if password is None else str(password),
        dbname=name,
        template_dbname=template,
        as_template=template is None,
    )


def _dsn(server: str, name: str) -> str:
    return make_conninfo(server, dbname=name)


@pytest.fixture(scope="session")
def pgsched_server(request: pytest.FixtureRequest) -> str:
    """The server DSN the other fixtures create their databases on."""
    return str(request.config.getoption("--pgsched-server") or os.environ.get("PGSCHED_TEST_DSN") or _DEFAULT_SERVER)


@pytest.fixture(scope="session")
def pgsched_template(pgsched_server: str) -> Iterator[str]:
    """Name of a database migrated to the latest pgsched schema, for the clones."""
    name = f"pgsched_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    janitor = _janitor(pgsched_server, name)
    janitor.init()
    try:
        Migrator(_dsn(pgsched_server, name)).migrate()
        yield name
    finally:
        janitor.drop()


@pytest.fixture
def pgsched_dsn(pgsched_server: str, pgsched_template: str) -> Iterator[str]:
    """DSN of a fresh, migrated database of this test's own; dropped after it."""
    name = f"pgsched_test_{uuid.uuid4().hex[:12]}"
    janitor = _janitor(pgsched_server, name, template=pgsched_template)
    janitor.init()
    try:
        yield _dsn(pgsched_server, name)
    finally:
        janitor.drop()


@pytest.fixture
def pgsched_settings(pgsched_dsn: str) -> Settings:
    """Settings on ``pgsched_dsn`` with test-friendly intervals: ``my_app.with_settings(pgsched_settings)``."""
    return Settings(dsn=pgsched_dsn, **_FAST)  # type: ignore[arg-type]


@pytest.fixture
def pgsched_app(pgsched_settings: Settings) -> Iterator[Pgsched]:
    """An empty ``Pgsched`` on the test's database (register tasks on it, or use your app's ``with_settings``)."""
    app = Pgsched(settings=pgsched_settings)
    yield app
    app.close()
