"""Applies ``migrations/NNNN_*.sql`` in order: forward-only, one transaction each, under an advisory lock.

Data layer. Safe when several processes migrate at once (they queue on the lock); a second
run is a no-op; an applied file whose text changed is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from pgsched import db
from pgsched.errors import MigrationError
from pgsched.queries import migrations_dir, query

__all__ = ["Migration", "MigrationStatus", "Migrator", "available_migrations"]

log = logging.getLogger(__name__)
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None


def available_migrations(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_verb_object.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


class Migrator:
    """Brings the ``pgsched`` schema of one database up to date."""

    def __init__(self, dsn: str, *, directory: Path | None = None, connect_timeout: int | None = None) -> None:
        self._dsn = dsn
        self._migrations = available_migrations(directory)
        self._connect: dict[str, Any] = {"connect_timeout": connect_timeout} if connect_timeout else {}

    @staticmethod
    def known() -> list[Migration]:
        """The migrations this package ships."""
        return available_migrations()

    def status(self) -> list[MigrationStatus]:
        with db.translated(), db.connect(self._dsn, "cli", **self._connect) as conn:
            applied = self._applied(conn)
        return [MigrationStatus(m, applied.get(m.version, (None, ""))[0]) for m in self._migrations]

    def pending_sql(self) -> str:
        """The SQL that ``migrate`` would run, for a DBA to read."""
        done = {s.migration.version for s in self.status() if s.applied_at is not None}
        return "\n".join(f"-- {m.path.name}\n{m.sql}" for m in self._migrations if m.version not in done)

    def migrate(self) -> list[Migration]:
        """Apply every pending migration; returns those applied by this call."""
        with db.translated(), db.connect(self._dsn, "cli") as conn:
            if db.behind_pooler(conn):
                # Through a transaction-mode pooler a session lock would stay on a shared server session:
                # each migration in a transaction of its own under a transaction-level lock instead.
                return [m for m in self._migrations if self._apply_locked(conn, m)]
            conn.execute(query("migration_lock"))
            try:
                conn.execute(query("migration_bootstrap"))
                applied = self._applied(conn)
                return [m for m in self._migrations if self._apply_new(conn, m, applied)]
            finally:
                conn.execute(query("migration_unlock"))

    def _apply_locked(self, conn: psycopg.Connection[Any], migration: Migration) -> bool:
        with conn.transaction():
            conn.execute(query("migration_xact_lock"))
            conn.execute(query("migration_bootstrap"))
            return self._apply_new(conn, migration, self._applied(conn))

    def _apply_new(
        self, conn: psycopg.Connection[Any], migration: Migration, applied: dict[int, tuple[datetime, str]]
    ) -> bool:
        """Apply ``migration`` unless it is applied already (then it must be unchanged); True when applied now."""
        known = applied.get(migration.version)
        if known is None:
            self._apply(conn, migration)
            return True
        if known[1] != migration.checksum:
            raise MigrationError(
                f"migration {migration.path.name} was edited after it was applied; add a new migration instead"
            )
        return False

    def _applied(self, conn: psycopg.Connection[Any]) -> dict[int, tuple[datetime, str]]:
        exists = conn.execute(query("migration_table_exists")).fetchone()
        if not exists or not exists["exists"]:
            return {}
        rows = conn.execute(query("migration_list")).fetchall()
        return {r["version"]: (r["applied_at"], r["checksum"]) for r in rows}

    def _apply(self, conn: psycopg.Connection[Any], migration: Migration) -> None:
        log.info("applying migration", extra={"event": "migration_apply", "migration": migration.path.name})
        try:
            with conn.transaction():
                # Migration files are the package's own DDL, never input.
                conn.execute(migration.sql)
                conn.execute(
                    query("migration_record"),
                    {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
                )
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.path.name} failed: {exc}".strip()) from exc
