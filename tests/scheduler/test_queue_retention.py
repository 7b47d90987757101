"""End to end: a queue's retention set from the CLI decides the purge_at of its jobs that a real worker finishes,
and the leader's next round creates the time partition they need, so none waits in jobs_done_default."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg

from pgsched import Pgsched
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.maintenance import Pruner
from pgsched.testing import drain


def _leader_rounds(app: Pgsched) -> None:
    """A leader round, then the slices of partition work it left, as the leader's loop runs them between rounds."""

    async def prune() -> None:
        async with await psycopg.AsyncConnection.connect(app.settings.require_dsn(), autocommit=True) as leader:
            pruner = Pruner(app.settings)
            await pruner.prune(leader)
            for _ in range(500):
                if not pruner.history_behind:
                    return
                await pruner.history_maintain(leader)
            raise AssertionError("the leader still creates partitions after 500 slices")

    asyncio.run(prune())


def _furthest_partition(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT max(purge_to) AS upto FROM pgsched.history_partitions").fetchone()
    assert row is not None
    return row["upto"]


def test_audit_jobs_kept_90_days_land_in_a_partition_the_leader_made_for_them(
    app: Pgsched, conn: psycopg.Connection[Any], capsys: Any
) -> None:
    @app.task
    def record(n: int) -> int:
        return n

    _leader_rounds(app)  # the defaults: partitions up to 30 days (dead) and one width ahead
    assert _furthest_partition(conn) < conn.execute("SELECT now() + interval '32 days' AS t").fetchone()["t"]

    dsn = app.settings.require_dsn()
    assert run_cli(cli, ["--dsn", dsn, "retention", "set", "audit", "succeeded", "90d"]) == 0
    assert "Warning" not in capsys.readouterr().err
    _leader_rounds(app)
    assert _furthest_partition(conn) >= conn.execute("SELECT now() + interval '91 days' AS t").fetchone()["t"]

    audit = app.enqueue("record", {"n": 1}, queue="audit")
    plain = app.enqueue("record", {"n": 2})
    outcomes = drain(app, queues=["audit", "default"])
    assert sorted(o.state for o in outcomes) == ["succeeded", "succeeded"]

    rows = conn.execute(
        """SELECT j.id, j.purge_at - j.finished_at AS kept, j.tableoid::regclass::text AS part,
                  h.purge_from <= j.purge_at AND j.purge_at < h.purge_to AS inside
             FROM pgsched.jobs j
             LEFT JOIN pgsched.history_partitions h ON 'pgsched.' || h.name = j.tableoid::regclass::text
            WHERE j.id = ANY(%s)""",
        [[audit, plain]],
    ).fetchall()
    by_id = {r["id"]: r for r in rows}
    assert by_id[audit]["kept"] == timedelta(days=90) and by_id[plain]["kept"] == timedelta(days=1)
    assert by_id[audit]["part"] != by_id[plain]["part"]
    assert all(r["inside"] for r in rows), rows  # each in its time partition, neither in jobs_done_default
