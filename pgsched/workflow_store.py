"""WorkflowStore: creates a whole workflow in one statement, reads its progress and steps, cancels it.

Data layer: runs the queries of ``sql/workflows.sql``; the release of steps is not here but in the
database (the ``jobs_advance_dependents`` trigger), so every way a job ends advances its workflow.
psycopg errors stop here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched import db
from pgsched.errors import WorkflowNotFound
from pgsched.job import NewJob
from pgsched.queries import query
from pgsched.workflow import Node, Started

__all__ = ["AsyncWorkflowStore", "WorkflowInfo", "WorkflowStep", "WorkflowStore", "insert_params"]

STEPS_SHOWN_MAX = 10_000


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """One row of ``pgsched.workflow_status``: progress per state and the overall state."""

    id: int
    name: str
    kind: str
    created_at: datetime
    steps: int
    waiting: int
    queued: int
    running: int
    succeeded: int
    dead: int
    cancelled: int
    state: str
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkflowInfo:
        return cls(**{name: row[name] for name in cls.__slots__})

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["created_at"] = self.created_at.isoformat()
        out["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return out


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step of a workflow (``pgsched.workflow_steps``)."""

    id: int
    task: str
    queue: str
    priority: int
    state: str
    attempt: int
    max_attempts: int
    depends_on: list[int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    last_error: str | None
    result: Any

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkflowStep:
        return cls(**{name: row[name] for name in cls.__slots__})

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        for name in ("created_at", "started_at", "finished_at"):
            value = out[name]
            out[name] = value.isoformat() if value else None
        return out


def insert_params(
    name: str, kind: str, ids: Sequence[int], jobs: Sequence[NewJob], nodes: Sequence[Node]
) -> dict[str, Any]:
    """Parameters of ``workflow_insert``: the steps as arrays, and one array entry per edge.

    The workflow, its steps and edges go in with that one statement, so no transaction is opened here:
    in the caller's transaction (``conn``) the workflow exists if and only if it commits."""
    awaited = {edge.depends_on for node in nodes for edge in node.edges}
    edges = [(i, k, edge) for i, node in enumerate(nodes) for k, edge in enumerate(node.edges)]
    return {
        "name": name,
        "kind": kind,
        "ids": list(ids),
        "tasks": [j.task for j in jobs],
        "args": [Jsonb(j.args) for j in jobs],
        "queues": [j.queue for j in jobs],
        "priorities": [j.priority for j in jobs],
        "run_ats": [j.run_at for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "timeouts": [j.timeout for j in jobs],
        "concurrency_keys": [j.concurrency_key for j in jobs],
        "concurrency_limits": [j.concurrency_limit for j in jobs],
        "waits": [bool(node.edges) for node in nodes],
        "has_dependents": [i in awaited for i in range(len(nodes))],
        "edge_jobs": [ids[i] for i, _, _ in edges],
        "edge_deps": [ids[edge.depends_on] for _, _, edge in edges],
        "edge_positions": [k for _, k, _ in edges],
        "edge_policies": [edge.on_failure for _, _, edge in edges],
        "edge_results_args": [nodes[i].step.results_arg for i, _, _ in edges],
    }


def _translated() -> contextlib.AbstractContextManager[None]:
    return db.translated(field="workflow", not_found=WorkflowNotFound)


class WorkflowStore:
    """Synchronous workflow access (application code, the CLI)."""

    def __init__(self, pool: ConnectionPool | None) -> None:
        self._pool = pool

    @contextlib.contextmanager
    def _conn(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        with _translated():
            if conn is not None:
                yield conn
            else:
                assert self._pool is not None, "a store without a pool needs a connection"
                with self._pool.connection() as pooled:
                    yield pooled

    def workflow_insert(
        self,
        name: str,
        kind: str,
        jobs: Sequence[NewJob],
        nodes: Sequence[Node],
        *,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Started:
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("job_ids_reserve"), {"n": len(jobs)}).fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            created = cur.execute(query("workflow_insert"), insert_params(name, kind, ids, jobs, nodes)).fetchone()
            assert created is not None
            return Started(int(created["id"]), tuple(ids))

    def workflow_get(self, workflow_id: int) -> WorkflowInfo | None:
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("workflow_get"), {"id": workflow_id}).fetchone()
            return WorkflowInfo.from_row(row) if row else None

    def workflow_steps_get(self, workflow_id: int, *, limit: int = STEPS_SHOWN_MAX) -> list[WorkflowStep]:
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query("workflow_steps_get"), {"id": workflow_id, "limit": limit}).fetchall()
            return [WorkflowStep.from_row(r) for r in rows]

    def workflow_list(
        self, *, state: str | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[WorkflowInfo]:
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            params = {"state": state, "before_id": before_id, "limit": limit}
            return [WorkflowInfo.from_row(r) for r in cur.execute(query("workflow_list"), params).fetchall()]

    def workflow_cancel(self, workflow_id: int) -> int:
        with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("workflow_cancel"), {"id": workflow_id}).fetchone()
            assert row is not None
            return int(row["cancelled"])


class AsyncWorkflowStore:
    """Asynchronous workflow access (the API, async application code)."""

    def __init__(self, pool: AsyncConnectionPool | None) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def _conn(self, conn: psycopg.AsyncConnection[Any] | None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with _translated():
            if conn is not None:
                yield conn
            else:
                assert self._pool is not None, "a store without a pool needs a connection"
                async with self._pool.connection() as pooled:
                    yield pooled

    async def workflow_insert(
        self,
        name: str,
        kind: str,
        jobs: Sequence[NewJob],
        nodes: Sequence[Node],
        *,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> Started:
        async with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_ids_reserve"), {"n": len(jobs)})
            row = await cur.fetchone()
            assert row is not None
            ids: list[int] = row["ids"]
            await cur.execute(query("workflow_insert"), insert_params(name, kind, ids, jobs, nodes))
            created = await cur.fetchone()
            assert created is not None
            return Started(int(created["id"]), tuple(ids))

    async def workflow_get(self, workflow_id: int) -> WorkflowInfo | None:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("workflow_get"), {"id": workflow_id})
            row = await cur.fetchone()
            return WorkflowInfo.from_row(row) if row else None

    async def workflow_steps_get(self, workflow_id: int, *, limit: int = STEPS_SHOWN_MAX) -> list[WorkflowStep]:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("workflow_steps_get"), {"id": workflow_id, "limit": limit})
            return [WorkflowStep.from_row(r) for r in await cur.fetchall()]

    async def workflow_list(
        self, *, state: str | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[WorkflowInfo]:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("workflow_list"), {"state": state, "before_id": before_id, "limit": limit})
            return [WorkflowInfo.from_row(r) for r in await cur.fetchall()]

    async def workflow_cancel(self, workflow_id: int) -> int:
        async with self._conn(None) as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("workflow_cancel"), {"id": workflow_id})
            row = await cur.fetchone()
            assert row is not None
            return int(row["cancelled"])
