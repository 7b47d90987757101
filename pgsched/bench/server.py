"""The server `pgsched bench` measures: a private embedded one with stock settings, or ``--dsn``'s.

Interface-side tool. ``PrivateServer`` starts the embedded PostgreSQL in a temporary directory
(stock settings: autovacuum, fsync and synchronous_commit on; for the soak, ``pg_stat_statements``
preloaded when the server ships it) and deletes it on exit. ``settings_report`` reads what shapes the figures
and says where a server differs from stock, so a figure from a tuned server is never mistaken
for what users get.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched.embedded import EmbeddedPostgres
from pgsched.queries import query

__all__ = ["STOCK", "PrivateServer", "ServerSettings", "settings_report"]

# What a fresh `initdb` gives; a production server keeps at least the first three.
STOCK = {"autovacuum": "on", "synchronous_commit": "on", "fsync": "on", "shared_buffers": "128MB"}

# Utility statements cannot be PREPAREd, so they are not named queries.
_PRELOAD_STATEMENTS = "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"


@dataclass(frozen=True)
class ServerSettings:
    values: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def statements_loaded(self) -> bool:
        return bool(self.values.get("statements_loaded"))


def settings_report(dsn: str, *, statements: bool = False) -> ServerSettings:
    """The server's version and settings, with one warning per difference from stock (and, when
    ``statements`` are wanted, one if pg_stat_statements is not loaded)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        values = dict(cur.execute(query("bench_server_settings")).fetchone() or {})
    warnings = [
        f"{name} = {values.get(name)} (stock: {stock}); figures differ from what a stock server gives"
        for name, stock in STOCK.items()
        if str(values.get(name)) != stock
    ]
    if statements and not values.get("statements_loaded"):
        state = "available but not preloaded" if values.get("statements_available") else "not installed"
        warnings.append(f"pg_stat_statements is {state}: statement times come from the bench's own timings")
    return ServerSettings(values, warnings)


class PrivateServer:
    """An embedded PostgreSQL with stock settings in a temporary directory, removed on exit.

    With ``statements``, pg_stat_statements is preloaded (one restart) when the server ships it.
    """

    def __init__(self, *, statements: bool = False) -> None:
        self._statements = statements
        self._root = Path(tempfile.mkdtemp(prefix="pgsched-bench-"))
        self._server = EmbeddedPostgres(self._root / "data", dbname="postgres")

    def __enter__(self) -> str:
        try:
            dsn = self._server.start()
            if self._statements and self._ships_statements(dsn):
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(_PRELOAD_STATEMENTS)
                self._server.stop()  # preloading takes a restart
                dsn = self._server.start()
        except BaseException:
            self.close()
            raise
        return dsn

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and delete its directory. Safe to call twice."""
        self._server.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    @staticmethod
    def _ships_statements(dsn: str) -> bool:
        return bool(settings_report(dsn).values.get("statements_available"))
