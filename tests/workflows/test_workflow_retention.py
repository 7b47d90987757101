"""Retention: the leader's prune pass deletes a workflow only once every one of its steps is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import Settings, maintenance
from pgsched.maintenance import Pruner


def _workflow_with_steps(conn: psycopg.Connection[Any], n: int) -> tuple[int, list[int]]:
    row = conn.execute("SELECT pgsched.workflow_create('kept', 'group') AS id").fetchone()
    assert row is not None
    ids = [conn.execute("SELECT pgsched.workflow_add(%s, 't') AS id", [row["id"]]).fetchone()["id"] for _ in range(n)]  # type: ignore[index]
    return int(row["id"]), ids


async def test_a_workflow_goes_only_when_all_its_steps_are_gone(dsn: str, conn: psycopg.Connection[Any]) -> None:
    emptied, emptied_steps = _workflow_with_steps(conn, 2)
    partly, partly_steps = _workflow_with_steps(conn, 2)
    fresh, fresh_steps = _workflow_with_steps(conn, 1)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() - interval '30 days'")
    conn.execute("DELETE FROM pgsched.jobs WHERE id = ANY(%s)", [[*emptied_steps, partly_steps[0], *fresh_steps]])
    edges = conn.execute("SELECT count(*) AS n FROM pgsched.job_dependencies").fetchone()
    assert edges is not None and edges["n"] == 0
    later = datetime.now(UTC) + timedelta(hours=2)  # all three are older than the hour of grace then
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        assert await Pruner(Settings(dsn=dsn)).workflow_prune(leader, now=later) == 2
        assert await Pruner(Settings(dsn=dsn)).workflow_prune(leader, now=datetime.now(UTC)) == 0
    left = [r["id"] for r in conn.execute("SELECT id FROM pgsched.workflows ORDER BY id")]
    assert left == [partly]
    assert emptied not in left and fresh not in left


async def test_deleting_a_step_takes_its_edges_along(conn: psycopg.Connection[Any]) -> None:
    wf = conn.execute("SELECT pgsched.workflow_create() AS id").fetchone()
    assert wf is not None
    a = conn.execute("SELECT pgsched.workflow_add(%s, 'a') AS id", [wf["id"]]).fetchone()
    assert a is not None
    b = conn.execute(
        "SELECT pgsched.workflow_add(%s, 'b', depends_on => ARRAY[%s]::bigint[]) AS id", [wf["id"], a["id"]]
    )
    b_id = b.fetchone()["id"]  # type: ignore[index]
    conn.execute("UPDATE pgsched.jobs SET state = 'cancelled', finished_at = now() WHERE id = %s", [b_id])
    conn.execute("DELETE FROM pgsched.jobs WHERE id = %s", [b_id])
    row = conn.execute("SELECT count(*) AS n FROM pgsched.job_dependencies").fetchone()
    assert row is not None and row["n"] == 0


async def test_edges_left_without_their_job_go_in_a_sweep_bounded_per_round(
    dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = conn.execute("SELECT pgsched.workflow_create() AS id").fetchone()
    assert wf is not None
    first = conn.execute("SELECT pgsched.workflow_add(%s, 'a') AS id", [wf["id"]]).fetchone()
    assert first is not None
    steps = [
        conn.execute(
            "SELECT pgsched.workflow_add(%s, 'b', depends_on => ARRAY[%s]::bigint[]) AS id", [wf["id"], first["id"]]
        ).fetchone()["id"]  # type: ignore[index]
        for _ in range(6)
    ]
    # What a dropped time partition leaves: rows gone with no DELETE on pgsched.jobs, so no trigger took the edges.
    conn.execute("DELETE FROM pgsched.jobs_queued WHERE id = ANY(%s)", [steps[:5]])
    monkeypatch.setattr(maintenance, "_PRUNE_BATCH", 2)
    monkeypatch.setattr(maintenance, "_SWEEP_BATCHES", 1)
    pruner = Pruner(Settings(dsn=dsn))

    def edges() -> list[int]:
        return [r["job_id"] for r in conn.execute("SELECT job_id FROM pgsched.job_dependencies ORDER BY job_id")]

    left = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        for _ in range(3):  # 6 dependents, 2 looked at per round
            await pruner.prune(leader)
            left.append(len(edges()))
    assert left == [4, 2, 1]  # two orphans a round, never more; the live step keeps its edge
    assert edges() == [steps[5]]
