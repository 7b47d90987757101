"""Connections to PostgreSQL: conninfo with role names and keepalives, the pool factory, dedicated
sessions, and the one translation of psycopg errors into pgsched's.

Infra layer: opens connections, runs no pgsched SQL of its own. Every connection carries
``application_name = pgsched:<role>:<pid>`` so ``pg_stat_activity`` shows who is who.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched.errors import DatabaseUnavailable, InvalidStateError, JobNotFound, ValidationError
from pgsched.queries import query

__all__ = [
    "async_pool",
    "behind_pooler",
    "connect",
    "connect_async",
    "conninfo",
    "execute_moving",
    "execute_moving_async",
    "pgsched_error",
    "pool_mode",
    "session_async",
    "set_prepared_statements",
    "sync_pool",
    "translated",
]

# pgsched.jobs is partitioned by state: an UPDATE of state moves the row to another partition (DELETE + INSERT).
# A statement that then locks or updates the old version gets SQLSTATE 40001 "tuple to be locked was already moved
# to another partition due to concurrent update" (even with SKIP LOCKED, when the move committed after the
# statement's snapshot); the statement rolled back and, run again, sees the row where it is now.
MOVED_RETRIES = 20
_MOVED = "moved to another partition"


# TCP keepalives detect a dead peer within ~25 s even when no query is running.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

# A pool with check_idle=True pings (one round trip) only connections last checked out longer ago than
# this, or whose socket has something to read while it sat in the pool (a server that shut down or
# crashed says so, or just hangs up: end of file); one in steady use skips the ping for a poll(2) of
# its socket, and a broken one is still dropped when it is returned. (Not a pool ``reset`` callback:
# with one, psycopg_pool returns every connection through a worker task.)
IDLE_CHECK_SECONDS = 1.0
_checked_out_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _needs_ping(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    if time.monotonic() - _checked_out_at.get(conn, float("-inf")) >= IDLE_CHECK_SECONDS:
        return True
    try:
        fd = conn.fileno()
    except psycopg.Error:
        return True
    return _readable(fd)  # an idle connection has nothing to read unless the server spoke or left


def _readable(fd: int) -> bool:
    if not hasattr(select, "poll"):  # Windows: select() takes any socket there
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    if _needs_ping(conn):
        ConnectionPool.check_connection(conn)
    _checked_out_at[conn] = time.monotonic()


async def _check_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _needs_ping(conn):
        await AsyncConnectionPool.check_connection(conn)
    _checked_out_at[conn] = time.monotonic()


def conninfo(dsn: str, role: str, **extra: Any) -> str:
    """The DSN with pgsched's application_name, and keepalives and a connect timeout unless the DSN sets its
    own (libpq applies ``connect_timeout`` per host: with several hosts, a shorter one reaches the next host
    sooner when one blackholes packets). ``extra`` wins over both."""
    given = conninfo_to_dict(dsn)
    params: dict[str, Any] = {k: v for k, v in {"connect_timeout": 10, **_KEEPALIVES}.items() if k not in given}
    params["application_name"] = f"pgsched:{role}:{os.getpid()}"
    params.update(extra)
    return make_conninfo(dsn, **params)


def _pooled(dialled: int, server_port: int | None) -> bool:
    """A transaction-mode pooler (PgBouncer) or proxy answers on another port than PostgreSQL listens on."""
    return server_port is not None and server_port != dialled


# Server-side prepared statements: "auto" uses them on direct connections only, "on" also behind a pooler
# (PgBouncer >= 1.21 with max_prepared_statements > 0 carries them), "off" never. Set once at start-up.
_policy = {"prepared": "auto"}
_behind: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def set_prepared_statements(mode: str) -> None:
    """The process's prepared-statement policy (``Settings.prepared_statements``): auto, on or off."""
    _policy["prepared"] = mode


def behind_pooler(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether this connection (opened by this module) reaches PostgreSQL through a pooler or proxy."""
    return _behind.get(conn, False)


def _note_route(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], server_port: int | None) -> bool:
    pooled = _behind[conn] = _pooled(conn.info.port, server_port)
    if _policy["prepared"] == "off" or (pooled and _policy["prepared"] != "on"):
        conn.prepare_threshold = None
    return pooled


def pool_mode(dsn: str) -> str:
    """How a pooler in front of ``dsn`` pools, as far as a client can tell: "transaction" when a second client
    gets the server session the first one just used while that first one stays connected (impossible in
    session mode), else "session or unknown" (a busy transaction pool may also hand out another session)."""
    with connect(dsn, "cli", connect_timeout=2) as first, connect(dsn, "cli", connect_timeout=2) as second:
        for _ in range(3):
            mine = first.execute(query("backend_pid_get")).fetchone()
            theirs = second.execute(query("backend_pid_get")).fetchone()
            if mine and theirs and mine["pid"] == theirs["pid"]:
                return "transaction"
    return "session or unknown"


def pooler_seen(dsn: str) -> tuple[int, int | None] | None:
    """(dialled port, server port) when a pooler or proxy sits between this client and PostgreSQL, else None."""
    with connect(dsn, "cli", connect_timeout=2) as conn:
        row = conn.execute(query("server_port_get")).fetchone()
        server = row["port"] if row else None
        return (conn.info.port, server) if _pooled(conn.info.port, server) else None


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Behind a pooler, each transaction may land on another server session: no server-side prepared statements
    (PgBouncer before 1.21 does not carry them; psycopg would prepare a statement after its fifth use)."""
    row = conn.execute(query("server_port_get")).fetchone()
    _note_route(conn, row["port"] if row else None)


async def _configure_async(conn: psycopg.AsyncConnection[Any], statement_timeout: float | None = None) -> None:
    """``_configure`` for async connections; with ``statement_timeout``, set it for the session when the session
    is ours alone (behind a pooler a session setting would leak to other clients: the pooler's own
    ``query_timeout`` or ``ALTER ROLE ... SET statement_timeout`` bounds statements there)."""
    row = await (await conn.execute(query("server_port_get"))).fetchone()
    if not _note_route(conn, row["port"] if row else None) and statement_timeout is not None:
        await conn.execute(query("session_statement_timeout_set"), {"ms": max(1, int(statement_timeout * 1000))})


def connect(dsn: str, role: str, *, autocommit: bool = True, **extra: Any) -> psycopg.Connection[dict[str, Any]]:
    with translated():
        conn = psycopg.connect(conninfo(dsn, role, **extra), autocommit=autocommit, row_factory=dict_row)
        _configure(conn)
        if not autocommit:
            conn.rollback()  # end the transaction the check opened
        return conn


async def connect_async(dsn: str, role: str, *, autocommit: bool = True) -> psycopg.AsyncConnection[dict[str, Any]]:
    with translated():
        conn = await psycopg.AsyncConnection.connect(conninfo(dsn, role), autocommit=autocommit, row_factory=dict_row)
        await _configure_async(conn)
        if not autocommit:
            await conn.rollback()
        return conn


async def session_async(
    dsn: str, role: str, *, within: float | None = None, prepare_threshold: int | None = 5, **extra: Any
) -> psycopg.AsyncConnection[Any]:
    """A dedicated autocommit connection of its own (LISTEN, advisory locks, the worker's prepared hot path).
    Tuple rows; ``extra`` goes to the conninfo (``options``...); ``within`` seconds bound the connect. It checks
    whether a pooler sits between (``behind_pooler``): the caller decides whether that is good enough
    (LISTEN and session locks are not); prepared statements then follow the process's policy.
    Raises ``DatabaseUnavailable`` when it cannot connect."""
    try:
        with translated():
            async with asyncio.timeout(within):
                conn = await psycopg.AsyncConnection.connect(
                    conninfo(dsn, role, **extra), autocommit=True, prepare_threshold=None
                )
                try:  # unprepared: a pooler may hand the next statement another server session
                    async with conn.cursor(row_factory=tuple_row) as cur:
                        row = await (await cur.execute(query("server_port_get"))).fetchone()
                except BaseException:
                    await conn.close()
                    raise
                conn.prepare_threshold = prepare_threshold
                _note_route(conn, row[0] if row else None)
                return conn
    except TimeoutError as exc:
        raise DatabaseUnavailable(f"could not connect within {within:g}s") from exc


@contextlib.asynccontextmanager
async def transaction_without_jit(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """A transaction on ``conn`` whose statements are never JIT-compiled: for statements that read many rows once
    each (the leader's rollups and counts), where compiling past ``jit_above_cost`` costs more than it could save.
    Transaction-local, so it holds behind a transaction pooler too and leaves the session as it was."""
    async with conn.transaction():
        await conn.execute(query("transaction_jit_off"))
        yield


def _pool_options(dsn: str, role: str, min_size: int, max_size: int) -> dict[str, Any]:
    """What every pgsched pool shares: unopened, autocommit, dict rows, named after its role."""
    return {
        "conninfo": conninfo(dsn, role),
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {"autocommit": True, "row_factory": dict_row},
        "open": False,
        "name": f"pgsched-{role}",
    }


def async_pool(
    dsn: str,
    role: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    check_idle: bool = False,
    statement_timeout: float | None = None,
    wait_timeout: float = 30.0,
) -> AsyncConnectionPool:
    """An unopened pool of autocommit, dict-row connections; open it with ``await pool.open()``.

    Every checkout is checked with a round trip, or with ``check_idle`` only after an idle second.
    ``statement_timeout`` (seconds) bounds each statement on a direct connection; ``wait_timeout`` bounds
    the wait for a connection.
    """
    return AsyncConnectionPool(
        **_pool_options(dsn, role, min_size, max_size),
        check=_check_if_idle_async if check_idle else AsyncConnectionPool.check_connection,
        configure=functools.partial(_configure_async, statement_timeout=statement_timeout),
        timeout=wait_timeout,
    )


def sync_pool(dsn: str, role: str, *, min_size: int = 1, max_size: int = 4, check_idle: bool = False) -> ConnectionPool:
    """An unopened sync pool; open it with ``pool.open()``. ``check_idle`` as in ``async_pool``."""
    return ConnectionPool(
        **_pool_options(dsn, role, min_size, max_size),
        check=_check_if_idle if check_idle else ConnectionPool.check_connection,
        configure=_configure,
    )


# The CHECK constraints of pgsched's tables, by the input field each one guards.
_CONSTRAINT_FIELDS = {
    "jobs_queue_name_valid": "queue",
    "jobs_task_name_valid": "task",
    "jobs_args_is_object": "args",
    "jobs_priority_range": "priority",
    "jobs_max_attempts_range": "max_attempts",
    "jobs_run_key_length": "run_key",
    "jobs_run_key_scope_valid": "run_key_scope",
    "jobs_run_key_period_valid": "run_key_period",
    "jobs_timeout_positive": "timeout",
    "jobs_concurrency_key_length": "concurrency_key",
    "jobs_concurrency_limit_range": "concurrency_limit",
    "jobs_tags_valid": "tags",
    "jobs_meta_is_object": "meta",
    "schedules_name_valid": "name",
    "schedules_cron_fields": "cron",
    "schedules_task_name_valid": "task",
    "schedules_queue_name_valid": "queue",
    "schedules_args_is_object": "args",
    "schedules_priority_range": "priority",
    "schedules_max_attempts_range": "max_attempts",
    "schedules_misfire_policy_valid": "misfire_policy",
    "schedules_misfire_grace_positive": "misfire_grace",
    "queues_name_valid": "queue",
    "queues_concurrency_range": "concurrency",
    "queues_rate_limit_range": "rate_limit",
    "queues_rate_period_range": "rate_period",
    "queues_rate_burst_range": "rate_burst",
    "api_tokens_name_valid": "name",
    "api_tokens_scope_valid": "scope",
    "jobs_progress_range": "progress",
    "tasks_name_valid": "name",
    "tasks_queue_name_valid": "queue",
    "tasks_priority_range": "priority",
    "tasks_max_attempts_range": "max_attempts",
    "workflows_name_length": "name",
    "job_dependencies_policy_valid": "on_failure",
    "job_dependencies_results_arg_valid": "results_arg",
    "retention_queue_valid": "queue",
    "retention_state_final": "state",
    "retention_keep_range": "keep_seconds",
}


def pgsched_error(
    exc: psycopg.Error, *, field: str = "job", not_found: Callable[[int], Exception] = JobNotFound
) -> Exception:
    """The one translation of a psycopg error into what pgsched's callers catch; ``field`` names the input
    blamed for bad data no constraint names; ``not_found`` is raised with the id a pgsched function found
    missing (no_data_found). Anything else (a bug, a task's own SQL) comes back unchanged."""
    message = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
    if isinstance(exc, pg_errors.NoDataFound):  # pgsched.cancel / retry of a missing job, and the like
        return not_found(_first_number(message))
    if isinstance(exc, pg_errors.QueryCanceled):
        return DatabaseUnavailable(f"the database did not answer in time: {message}")
    if isinstance(exc, pg_errors.ObjectInUse | pg_errors.ObjectNotInPrerequisiteState | pg_errors.ForeignKeyViolation):
        return InvalidStateError(message)
    if isinstance(exc, pg_errors.CheckViolation):
        constraint = exc.diag.constraint_name or ""
        return ValidationError(_CONSTRAINT_FIELDS.get(constraint, field), f"rejected by the database ({constraint})")
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return ValidationError(field, message)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(str(exc).strip() or type(exc).__name__)
    return exc


def _first_number(message: str) -> int:
    return next((int(word) for word in message.split() if word.isdigit()), 0)


@contextlib.contextmanager
def translated(
    *, field: str = "job", not_found: Callable[[int], Exception] = JobNotFound, only_connection: bool = False
) -> Iterator[None]:
    """Raise psycopg errors as pgsched's (``pgsched_error``). ``only_connection`` translates only a lost or
    unreachable database, and passes every other error on as it is (a transactional task's own SQL)."""
    try:
        yield
    except psycopg.Error as exc:
        new = pgsched_error(exc, field=field, not_found=not_found)
        if new is exc or (only_connection and not isinstance(new, DatabaseUnavailable)):
            raise
        raise new from exc


def _moved(exc: psycopg.Error) -> bool:
    """The partitions changed under the statement: a row it reached had been moved to another partition by a
    concurrent change of state (40001), or it routed a row into jobs_done's default partition by the partitions it
    saw when it began while the leader attached the time partition for that row's purge_at (23514 on the default
    partition, no constraint name). Either way the same statement, run again, sees where rows are now."""
    if isinstance(exc, pg_errors.SerializationFailure):
        return _MOVED in str(exc)
    return (
        isinstance(exc, pg_errors.CheckViolation)
        and exc.diag.constraint_name is None
        and (exc.diag.table_name or "").startswith("jobs_done")
    )


def _in_callers_transaction(status: psycopg.pq.TransactionStatus) -> bool:
    """Whether the caller holds a transaction open on the connection (its statements then retry under a savepoint).
    Only an open transaction block says so. ACTIVE is a statement in flight: on an autocommit link that tasks share
    (the worker's) it is another task's, never the caller's, which is waiting on this call."""
    return status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR)


def execute_moving(
    target: psycopg.Connection[Any] | psycopg.Cursor[Any], sql: Any, params: Any = None, **kwargs: Any
) -> psycopg.Cursor[Any]:
    """Run one statement that locks, updates or moves jobs, again when the partitions changed under it (``_moved``;
    the one home of that retry, at most ``MOVED_RETRIES`` times). Inside the caller's transaction each try runs
    under a savepoint, so a retry never loses what the transaction did before (a transactional task's writes)."""
    conn = target.connection if isinstance(target, psycopg.Cursor) else target
    inside = _in_callers_transaction(conn.info.transaction_status)
    for attempt in range(MOVED_RETRIES):
        try:
            if not inside:
                return target.execute(sql, params, **kwargs)
            with conn.transaction():
                return target.execute(sql, params, **kwargs)
        except psycopg.Error as exc:
            if attempt == MOVED_RETRIES - 1 or not _moved(exc):
                raise
    raise AssertionError("unreachable")


async def execute_moving_async(
    target: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any], sql: Any, params: Any = None, **kwargs: Any
) -> psycopg.AsyncCursor[Any]:
    """The async twin of ``execute_moving``."""
    conn = target.connection if isinstance(target, psycopg.AsyncCursor) else target
    inside = _in_callers_transaction(conn.info.transaction_status)
    for attempt in range(MOVED_RETRIES):
        try:
            if not inside:
                return await target.execute(sql, params, **kwargs)
            async with conn.transaction():
                return await target.execute(sql, params, **kwargs)
        except psycopg.Error as exc:
            if attempt == MOVED_RETRIES - 1 or not _moved(exc):
                raise
    raise AssertionError("unreachable")
