"""Django integration: enqueue on Django's own database connection, run workers with ``manage.py``.

Add ``"pgsched.contrib.django"`` to ``INSTALLED_APPS`` and set ``PGSCHED_APP = "myproject.tasks:app"``
(optionally ``PGSCHED_DATABASE``, the ``DATABASES`` alias, default ``"default"``). Needs Django's
psycopg 3 backend (Django 4.2+ with psycopg installed). Interface layer: wiring, no SQL.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from psycopg.conninfo import make_conninfo

from pgsched.app import Pgsched
from pgsched.cli.worker import load_app
from pgsched.errors import ConfigurationError
from pgsched.tasks import Task

__all__ = ["database_dsn", "enqueue", "get_app"]

# DATABASES[...]["OPTIONS"] keys that are Django's, not libpq connection parameters.
_NOT_LIBPQ = frozenset({"isolation_level", "server_side_binding", "pool", "assume_role", "context", "cursor_factory"})


def get_app() -> Pgsched:
    """The application named by ``settings.PGSCHED_APP`` (``MODULE:APP``)."""
    ref = getattr(settings, "PGSCHED_APP", None)
    if not ref:
        raise ConfigurationError('set PGSCHED_APP = "module:app" in the Django settings')
    return load_app(str(ref))


def database_dsn(alias: str | None = None) -> str:
    """A libpq connection string for a ``DATABASES`` entry (default: ``PGSCHED_DATABASE`` or ``"default"``)."""
    config = settings.DATABASES[alias or getattr(settings, "PGSCHED_DATABASE", "default")]
    params: dict[str, Any] = {
        "dbname": config.get("NAME"),
        "user": config.get("USER"),
        "password": config.get("PASSWORD"),
        "host": config.get("HOST"),
        "port": config.get("PORT"),
    }
    params.update((k, v) for k, v in config.get("OPTIONS", {}).items() if k not in _NOT_LIBPQ)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})


def enqueue(task: Task | str, args: dict[str, Any] | None = None, *, using: str | None = None, **options: Any) -> int:
    """Enqueue on Django's connection ``using``: inside ``transaction.atomic()`` the job commits or rolls
    back with the view's transaction. A ``Task`` brings its defaults (queue, attempts, ...), as ``task.enqueue``."""
    connection = connections[using or getattr(settings, "PGSCHED_DATABASE", "default")]
    if connection.vendor != "postgresql":
        raise ConfigurationError(f"pgsched needs a PostgreSQL database, got {connection.vendor}")
    connection.ensure_connection()
    raw = connection.connection  # the psycopg 3 Connection, in Django's transaction state
    if not isinstance(raw, psycopg.Connection):
        raise ConfigurationError("pgsched needs Django's psycopg 3 backend (pip install psycopg), not psycopg2")
    if isinstance(task, Task):
        return task.enqueue(**(args or {}), conn=raw, **options)
    return get_app().enqueue(task, args, conn=raw, **options)
