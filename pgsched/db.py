"""Connections to PostgreSQL: conninfo with role names and keepalives, pools, error translation.

Infra layer: opens connections, runs no pgsched SQL of its own. Every connection carries
``application_name = pgsched:<role>:<pid>`` so ``pg_stat_activity`` shows who is who.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched.errors import DatabaseUnavailable

__all__ = [
    "async_pool",
    "connect",
    "connect_async",
    "conninfo",
    "sync_pool",
    "translate_async_errors",
    "translate_errors",
]

# TCP keepalives detect a dead peer within ~25 s even when no query is running.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

# A pool with check_idle=True pings (one round trip) only connections last checked out longer ago than
# this; one in steady use skips the ping, and a broken one is still dropped when it is returned. (Not
# a pool ``reset`` callback: with one, psycopg_pool returns every connection through a worker task.)
IDLE_CHECK_SECONDS = 1.0
_checked_out_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _idle(conn: Any) -> bool:
    return time.monotonic() - _checked_out_at.get(conn, float("-inf")) >= IDLE_CHECK_SECONDS


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    if _idle(conn):
        ConnectionPool.check_connection(conn)
    _checked_out_at[conn] = time.monotonic()


async def _check_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _idle(conn):
        await AsyncConnectionPool.check_connection(conn)
    _checked_out_at[conn] = time.monotonic()


def conninfo(dsn: str, role: str, **extra: Any) -> str:
    """The DSN with pgsched's application_name, keepalives and a connect timeout added."""
    params: dict[str, Any] = {"application_name": f"pgsched:{role}:{os.getpid()}", "connect_timeout": 10}
    params.update(_KEEPALIVES)
    params.update(extra)
    return make_conninfo(dsn, **params)


def connect(dsn: str, role: str, *, autocommit: bool = True, **extra: Any) -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(conninfo(dsn, role, **extra), autocommit=autocommit, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).strip()) from exc


async def connect_async(dsn: str, role: str, *, autocommit: bool = True) -> psycopg.AsyncConnection[dict[str, Any]]:
    try:
        return await psycopg.AsyncConnection.connect(conninfo(dsn, role), autocommit=autocommit, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).strip()) from exc


def async_pool(
    dsn: str, role: str, *, min_size: int = 1, max_size: int = 4, check_idle: bool = False
) -> AsyncConnectionPool:
    """An unopened pool of autocommit, dict-row connections; open it with ``await pool.open()``.

    Every checkout is checked with a round trip, or with ``check_idle`` only after an idle second.
    """
    return AsyncConnectionPool(
        conninfo(dsn, role),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
        check=_check_if_idle_async if check_idle else AsyncConnectionPool.check_connection,
        name=f"pgsched-{role}",
    )


def sync_pool(dsn: str, role: str, *, min_size: int = 1, max_size: int = 4, check_idle: bool = False) -> ConnectionPool:
    """An unopened sync pool; open it with ``pool.open()``. ``check_idle`` as in ``async_pool``."""
    return ConnectionPool(
        conninfo(dsn, role),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
        check=_check_if_idle if check_idle else ConnectionPool.check_connection,
        name=f"pgsched-{role}",
    )


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn connection-level psycopg errors into ``DatabaseUnavailable``."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc


@contextlib.asynccontextmanager
async def translate_async_errors() -> AsyncIterator[None]:
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
