"""Checks a CLI command makes before it works: the DSN parses, the database answers fast, the schema is current.

Interface layer. Turns the first run's usual mistakes (no database, never migrated, a port in use)
into one clear line instead of a retry loop or a traceback.
"""

from __future__ import annotations

import socket

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgsched.errors import ConfigurationError, MigrationError
from pgsched.migrate import Migrator

__all__ = ["PREFLIGHT_CONNECT_TIMEOUT", "check_dsn_syntax", "check_port_free", "require_schema"]

PREFLIGHT_CONNECT_TIMEOUT = 2

_checked: set[str] = set()


def check_dsn_syntax(dsn: str) -> None:
    """Raise ConfigurationError naming the problem when ``dsn`` is not a libpq URI or key=value string."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid DSN: {str(exc).strip()}") from None


def require_schema(dsn: str) -> None:
    """Fail within about two seconds when the database is unreachable, and say so when it is not migrated."""
    if dsn in _checked:
        return
    pending = [
        s.migration.path.name
        for s in Migrator(dsn, connect_timeout=PREFLIGHT_CONNECT_TIMEOUT).status()
        if s.applied_at is None
    ]
    if pending:
        what = "has no pgsched schema" if len(pending) == len(Migrator.known()) else "has pending migrations"
        raise MigrationError(f"the database {what}: run `pgsched migrate` first")
    _checked.add(dsn)


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigurationError when nothing could listen on ``host:port`` (already in use, or not an address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
            raise ConfigurationError(f"{host}:{port} {reason}: choose another with --port") from None
