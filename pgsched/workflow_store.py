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

from pgsched import db, enqueue_rows
from pgsched.errors import WorkflowNotFound
from pgsched.job import NewJob
from pgsched.queries import query
from pgsched.workflow import Node, Started

__all__ = ["AsyncWorkflowStore", "WorkflowInfo", "WorkflowStep", "WorkflowStore", "edge_rows", "step_rows"]

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


_STEP_TYPES = ["int8", "text", "jsonb", "text", "int2", "timestamptz", "int4", "interval", "text", "int4",
               "text[]", "jsonb", "timestamptz", "text", "int8", "bool", "int4"]  # fmt: skip
_EDGE_TYPES = ["int8", "int8", "int4", "text", "text"]


def step_rows(
    workflow_id: int,
    ids: Sequence[int],
    jobs: Sequence[NewJob],
    nodes: Sequence[Node],
    now: datetime,
    defaults: enqueue_rows.Defaults,
) -> list[tuple[Any, ...]]:
    """COPY rows of the steps (a job's row as enqueue_many writes it, labels included), then: waiting
    (with deps_left) when a step has dependencies, else queued; its workflow; whether others wait for it."""
    awaited = {edge.depends_on for node in nodes for edge in node.edges}
    rows = []
    for i, (job, node) in enumerate(zip(jobs, nodes, strict=True)):
        waits = len(node.edges)
        row = enqueue_rows.copy_row(ids[i], job, now, defaults, True)
        rows.append((*row, "waiting" if waits else "queued", workflow_id, i in awaited, waits or None))
    return rows


def edge_rows(ids: Sequence[int], nodes: Sequence[Node]) -> list[tuple[Any, ...]]:
    """COPY rows of the edges: (dependent, dependency, position, policy, results_arg)."""
    return [
        (ids[i], ids[edge.depends_on], k, edge.on_failure, node.step.results_arg)
        for i, node in enumerate(nodes)
        for k, edge in enumerate(node.edges)
    ]


@contextlib.contextmanager
def _joined(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A transaction of its own on an autocommit connection (the pool's); else the caller's transaction."""
    if conn.autocommit:
        with conn.transaction():
            yield
    else:
        yield


@contextlib.asynccontextmanager
async def _joined_async(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    if conn.autocommit:
        async with conn.transaction():
            yield
    else:
        yield


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
        """The workflow, its steps and edges: one INSERT, then one COPY each, in one transaction (the
        caller's with ``conn``: the workflow then exists if and only if that transaction commits)."""
        with self._conn(conn) as c, _joined(c), c.cursor(row_factory=dict_row) as cur:
            begun = cur.execute(query("workflow_begin"), {"name": name, "kind": kind, "n": len(jobs)}).fetchone()
            assert begun is not None
            ids: list[int] = begun["ids"]
            names = enqueue_rows.unresolved(jobs)
            found = cur.execute(query("task_defaults_many"), {"names": names}).fetchall() if names else []
            rows = step_rows(begun["id"], ids, jobs, nodes, begun["now"], enqueue_rows.resolved(found))
            with cur.copy(query("workflow_steps_copy")) as copy:
                copy.set_types(_STEP_TYPES)
                for row in rows:
                    copy.write_row(row)
            edges = edge_rows(ids, nodes)
            if edges:
                with cur.copy(query("workflow_edges_copy")) as copy:
                    copy.set_types(_EDGE_TYPES)
                    for row in edges:
                        copy.write_row(row)
            return Started(int(begun["id"]), tuple(ids))

    def workflow_add(
        self,
        job: NewJob,
        depends_on: Sequence[int],
        *,
        on_failure: str = "cancel",
        results_arg: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """One job that waits for existing jobs (``pgsched.workflow_add``); with ``conn``, in that transaction."""
        params = {
            "workflow_id": None,
            "task": job.task,
            "args": Jsonb(job.args),
            "depends_on": list(depends_on),
            "on_failure": on_failure,
            "queue": job.queue,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "timeout": job.timeout,
            "results_arg": results_arg,
        }
        with self._conn(conn) as c, c.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("workflow_add"), params).fetchone()
            assert row is not None
            return int(row["id"])

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
        """The async twin of ``WorkflowStore.workflow_insert``."""
        async with self._conn(conn) as c, _joined_async(c), c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("workflow_begin"), {"name": name, "kind": kind, "n": len(jobs)})
            begun = await cur.fetchone()
            assert begun is not None
            ids: list[int] = begun["ids"]
            found: list[dict[str, Any]] = []
            if names := enqueue_rows.unresolved(jobs):
                await cur.execute(query("task_defaults_many"), {"names": names})
                found = await cur.fetchall()
            rows = step_rows(begun["id"], ids, jobs, nodes, begun["now"], enqueue_rows.resolved(found))
            async with cur.copy(query("workflow_steps_copy")) as copy:
                copy.set_types(_STEP_TYPES)
                for row in rows:
                    await copy.write_row(row)
            edges = edge_rows(ids, nodes)
            if edges:
                async with cur.copy(query("workflow_edges_copy")) as copy:
                    copy.set_types(_EDGE_TYPES)
                    for row in edges:
                        await copy.write_row(row)
            return Started(int(begun["id"]), tuple(ids))

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
