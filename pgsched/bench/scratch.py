"""Scratch databases of `pgsched bench`: one migrated template, fresh clones of it, all dropped at the end.

Interface-side tool. A clone carries no planner statistics (the template's tables were never
analyzed), so every drain starts from a known statistics state.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgsched.migrate import Migrator

__all__ = ["DEFAULT_PREFIX", "Databases", "admin_dsn"]

DEFAULT_PREFIX = "pgsched_bench"


def admin_dsn(dsn: str) -> str:
    """The same server, database ``postgres`` (to create and drop the bench databases)."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = "postgres"
    return make_conninfo(**params)  # type: ignore[arg-type]


@dataclass
class Databases:
    """Databases named ``<prefix>_<pid>_<random>_<suffix>`` on one server."""

    admin_dsn: str
    prefix: str = DEFAULT_PREFIX
    created: list[str] = field(default_factory=list)
    template: str | None = None
    _tag: str = field(default_factory=lambda: f"{os.getpid()}_{uuid.uuid4().hex[:6]}")

    def dsn(self, name: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=name)

    def create(self, suffix: str, *, template: str | None = None) -> str:
        name = f"{self.prefix}_{self._tag}_{suffix}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)
        self.created.append(name)
        return name

    def clone(self, suffix: str) -> str:
        """A fresh migrated database (the template is made and migrated on first use); returns its DSN."""
        if self.template is None:
            self.template = self.create("tmpl")
            Migrator(self.dsn(self.template)).migrate()
        return self.dsn(self.create(suffix, template=self.template))

    def drop(self, dsn: str) -> None:
        name = str(conninfo_to_dict(dsn)["dbname"])
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in reversed(list(self.created)):
            self.drop(self.dsn(name))
        self.template = None
