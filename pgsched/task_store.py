"""TaskStore: reads the task registry (``pgsched.tasks``, which workers publish through liveness).

Data layer. Answers which task names no live worker serves, so the REST API and the CLI can
refuse them; it never writes the registry. A lost or unreachable database is ``DatabaseUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched.db import translated
from pgsched.errors import ValidationError
from pgsched.queries import query
from pgsched.tasks import unknown_task_error

__all__ = ["AsyncTaskStore", "Unserved", "TaskStore"]


@dataclass(frozen=True, slots=True)
class Unserved:
    """Task names no live worker serves (in the order asked), and every name some worker serves."""

    missing: list[str]
    served: list[str]

    def error(self, *, override: str, field_name: str = "task") -> ValidationError:
        return unknown_task_error(self.missing[0], self.served, override=override, field_name=field_name)


def _missing(asked: Sequence[str], known: set[str]) -> list[str]:
    return [name for name in dict.fromkeys(asked) if name not in known]


class TaskStore:
    """Synchronous registry reads (the CLI)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def task_names_unserved(self, names: Sequence[str]) -> Unserved | None:
        """None when a live worker serves every name."""
        with translated(), self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            known = {r["name"] for r in cur.execute(query("task_names_known"), {"names": list(names)})}
            missing = _missing(names, known)
            if not missing:
                return None
            return Unserved(missing, [r["name"] for r in cur.execute(query("task_names_all"))])


class AsyncTaskStore:
    """Registry reads for the API."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def task_names_unserved(self, names: Sequence[str]) -> Unserved | None:
        """As ``TaskStore.task_names_unserved``."""
        with translated():
            return await self._unserved(names)

    async def _unserved(self, names: Sequence[str]) -> Unserved | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("task_names_known"), {"names": list(names)})
            missing = _missing(names, {r["name"] for r in await cur.fetchall()})
            if not missing:
                return None
            await cur.execute(query("task_names_all"))
            return Unserved(missing, [r["name"] for r in await cur.fetchall()])
