"""``pgsched doctor``: is this deployment healthy? Database, migrations, listener, leader, Redis, bloat,
long transactions, and whether the time partitions of finished jobs reach the longest retention. Each check
says ok, warn or fail; any fail exits 1.

Interface layer: reads only; never changes data.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from pgsched import db
from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cli.preflight import PREFLIGHT_CONNECT_TIMEOUT
from pgsched.cli.stores import CliStores, with_stores
from pgsched.config import Settings
from pgsched.errors import DatabaseUnavailable, MigrationError
from pgsched.migrate import Migrator
from pgsched.queries import query
from pgsched.retention import HISTORY_MAX_AHEAD, format_seconds, partitions_needed
from pgsched.retention_store import DEFAULT_ROWS_CAP

__all__ = ["Check", "doctor"]

LONG_TRANSACTION_SECONDS = 300.0
DEAD_TUPLES_WARN = 10_000


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


def _migrations(dsn: str) -> Check:
    try:
        status = Migrator(dsn, connect_timeout=PREFLIGHT_CONNECT_TIMEOUT).status()
        pending = [s.migration.path.name for s in status if s.applied_at is None]
    except (DatabaseUnavailable, MigrationError) as exc:
        return Check("database", "fail", str(exc).splitlines()[0])
    if pending:
        return Check("migrations", "fail", f"pending: {', '.join(pending)} (run pgsched migrate)")
    return Check("migrations", "ok", "schema is up to date")


async def _cluster(s: CliStores, settings: Settings) -> list[Check]:
    health = await s.admin.health_check(wait=10.0)
    checks = [
        Check("database", "ok", "reachable"),
        Check(
            "listener",
            "ok" if health.workers_alive else "warn",
            f"{health.workers_alive} live worker(s)" if health.workers_alive else "no live worker: jobs will not run",
        ),
        Check(
            "leader", "ok" if health.leader else "warn", "held" if health.leader else "no leader: cron will not fire"
        ),
    ]
    bloated = [
        f"{r['table_name']} ({r['dead']} dead / {r['live']} live)"
        for r in await s.admin.table_bloat_list()
        if r["dead"] > DEAD_TUPLES_WARN and r["dead"] > r["live"] * 0.2
    ]
    checks.append(Check("dead tuples", "warn" if bloated else "ok", "; ".join(bloated) or "autovacuum keeps up"))
    long_tx = await s.admin.long_transaction_list(LONG_TRANSACTION_SECONDS)
    detail = "; ".join(f"pid {r['pid']} {r['application_name'] or '?'} open {r['seconds']:.0f}s" for r in long_tx)
    checks.append(Check("long transactions", "warn" if long_tx else "ok", detail or "none over 5 minutes"))
    checks.append(await _retention(s, settings))
    return checks


async def _retention(s: CliStores, settings: Settings) -> Check:
    """Warn when the longest retention needs more time partitions ahead than the leader keeps: those jobs wait in
    jobs_done_default (scanned whole by every prune round) until their partition is created."""
    h = await s.retention.history_horizon_get()
    width = h.width_seconds or settings.history_partition_seconds
    longest = f"{h.longest_queue} {h.longest_state} ({format_seconds(h.longest_keep_seconds)})"
    more = "+" if h.default_rows >= DEFAULT_ROWS_CAP else ""
    waiting = f"; {h.default_rows}{more} finished job(s) in pgsched.jobs_done_default" if h.default_rows else ""
    warning = h.warning(h.longest_keep_seconds, width)
    if warning:
        return Check("retention", "warn", f"longest retention {longest}: {warning}{waiting}")
    needed = partitions_needed(h.longest_keep_seconds, width)
    return Check(
        "retention",
        "ok",
        f"longest retention {longest} needs {needed} time partitions of {format_seconds(width)} ahead (at most "
        f"{HISTORY_MAX_AHEAD}); {h.partitions_ahead} exist{waiting}",
    )


def _pooler(dsn: str, settings: Settings) -> Check:
    """Pooler or not, its mode as far as a client can tell, prepared statements, and what falls back."""
    try:
        seen = db.pooler_seen(dsn)
        mode = db.pool_mode(dsn) if seen else ""
    except DatabaseUnavailable as exc:
        return Check("pooler", "fail", str(exc).splitlines()[0])
    prepared = "off" if settings.prepared_statements == "off" else "on"
    if seen is None:
        return Check("pooler", "ok", f"direct connection to PostgreSQL; prepared statements {prepared}")
    prepared = "on" if settings.prepared_statements == "on" else "off"
    found = (
        f"a pooler or proxy answers on port {seen[0]}, PostgreSQL listens on {seen[1]}; pool mode: {mode}; "
        f"prepared statements are {prepared} (PGSCHED_PREPARED_STATEMENTS={settings.prepared_statements})"
    )
    if settings.session_dsn:
        return Check("pooler", "ok", f"{found}; LISTEN and the session locks use PGSCHED_SESSION_DSN")
    return Check(
        "pooler",
        "warn",
        f"{found}; PGSCHED_SESSION_DSN is not set, so workers and schedulers fall back: no LISTEN (polling every "
        f"{settings.poll_seconds:g}s), the leader lease row instead of the advisory lock, worker liveness by "
        "heartbeat age; migrate runs in one transaction",
    )


def _session(dsn: str) -> Check:
    try:
        seen = db.pooler_seen(dsn)
    except DatabaseUnavailable as exc:
        return Check("session dsn", "fail", f"PGSCHED_SESSION_DSN unreachable: {str(exc).splitlines()[0]}")
    if seen is None:
        return Check("session dsn", "ok", "PGSCHED_SESSION_DSN reaches PostgreSQL directly")
    return Check(
        "session dsn",
        "warn",
        f"PGSCHED_SESSION_DSN goes through a pooler or proxy (port {seen[0]}): it must pool in session mode",
    )


def _read_replica(dsn: str) -> Check:
    try:
        with db.connect(dsn, "cli", connect_timeout=PREFLIGHT_CONNECT_TIMEOUT) as conn:
            row = conn.execute(query("replica_status_get")).fetchone()
    except DatabaseUnavailable as exc:
        return Check("read dsn", "warn", f"PGSCHED_READ_DSN unreachable (the API reads the primary): {exc}")
    if row is None or not row["standby"]:
        return Check("read dsn", "ok", "PGSCHED_READ_DSN is not a standby: lists read a primary")
    age = row["replay_age_seconds"]
    replayed = "nothing replayed yet" if age is None else f"the last transaction it replayed committed {age:.1f}s ago"
    return Check(
        "read dsn", "ok", f"PGSCHED_READ_DSN is a standby; {replayed} (lists lag the primary by the replay delay)"
    )


def _redis(url: str) -> Check:
    """A raw PING, so the doctor needs no Redis client; -NOAUTH still proves the server is up."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return Check("redis", "fail", f"unreachable: {exc}")
    if reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR")):
        return Check("redis", "ok", "reachable")
    return Check("redis", "fail", "unexpected reply to PING")


def run_checks(ctx: CliContext) -> list[Check]:
    dsn = ctx.dsn()
    migrations = _migrations(dsn)
    if migrations.name == "database":
        checks = [migrations]
    elif migrations.status == "fail":  # reachable, but the views the other checks read are missing or old
        checks = [Check("database", "ok", "reachable"), migrations]
    else:
        try:
            checks = [*with_stores(ctx.settings, lambda s: _cluster(s, ctx.settings)), migrations]
        except DatabaseUnavailable as exc:
            checks = [Check("database", "fail", str(exc).splitlines()[0]), migrations]
    if migrations.name != "database":
        checks.append(_pooler(dsn, ctx.settings))
    if ctx.settings.session_dsn:
        checks.append(_session(ctx.settings.session_dsn))
    if ctx.settings.read_dsn:
        checks.append(_read_replica(ctx.settings.read_dsn))
    if ctx.settings.redis_url:
        checks.append(_redis(ctx.settings.redis_url))
    order = [
        "database",
        "migrations",
        "pooler",
        "session dsn",
        "read dsn",
        "listener",
        "leader",
        "redis",
        "retention",
        "dead tuples",
        "long transactions",
    ]
    return sorted(checks, key=lambda c: order.index(c.name))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def doctor(ctx: CliContext, as_json: bool) -> int:
    """Check the database, migrations, listener, leader, Redis, retention's partitions, bloat, long transactions."""
    checks = run_checks(ctx)
    rows: list[dict[str, Any]] = [asdict(c) for c in checks]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["name", "status", "detail"])
    return 1 if any(c.status == "fail" for c in checks) else 0
