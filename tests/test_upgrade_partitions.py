"""The migrations that change where jobs live convert a live database, and nothing is lost: 0020 (pgsched.jobs becomes
partitioned by state), 0046 (running jobs get a partition of their own, jobs_live becomes jobs_queued) and 0052 (ten
columns take domain types that carry their rules; the views over them are made again).

The database is migrated to the version before one of them, filled with jobs in every state, schedules, tokens,
result waiters, a workflow and dead jobs, then migrated on; everything is still there and still usable.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgsched.migrate import Migrator, available_migrations
from pgsched.queries import migrations_dir, query
from pgsched.schedule_store import ScheduleStore

PARTITIONED = 20  # pgsched.jobs partitioned by state
RUNNING_SPLIT = 46  # jobs_running split from jobs_live (renamed jobs_queued)
DOMAINS = 52  # the single-column rules of pgsched.jobs move to domains


def _migrations_before(tmp_path: Path, version: int) -> Path:
    older = tmp_path / "migrations"
    older.mkdir()
    for m in available_migrations():
        if m.version < version:
            shutil.copy(migrations_dir() / m.path.name, older / m.path.name)
    return older


def _fill(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for state in ("waiting", "queued", "running", "succeeded", "dead", "cancelled"):
        finished = "now() - interval '1 hour'" if state in ("succeeded", "dead", "cancelled") else "NULL"
        row = conn.execute(
            "INSERT INTO pgsched.jobs"
            " (task, queue, state, attempt, max_attempts, finished_at, result, errors, worker_id, lease)"
            f" VALUES ('t', 'default', %s, %s, 1, {finished}, %s, %s, %s, %s) RETURNING id",
            [
                state,
                1 if state in ("running", "succeeded", "dead") else 0,
                Jsonb({"answer": 42}) if state == "succeeded" else None,
                Jsonb([{"error": "boom", "attempt": 1}]) if state == "dead" else Jsonb([]),
                7 if state == "running" else None,
                99 if state == "running" else None,
            ],
        ).fetchone()
        assert row is not None
        ids[state] = row["id"]
    wf = conn.execute("SELECT pgsched.workflow_create('upgrade') AS id").fetchone()
    assert wf is not None
    first = conn.execute("SELECT pgsched.workflow_add(%s, 'a') AS id", [wf["id"]]).fetchone()
    assert first is not None
    second = conn.execute(
        "SELECT pgsched.workflow_add(%s, 'b', depends_on => %s) AS id", [wf["id"], [first["id"]]]
    ).fetchone()
    assert second is not None
    ids["step_a"], ids["step_b"] = first["id"], second["id"]
    conn.execute(
        "INSERT INTO pgsched.schedules (name, cron, task, args) VALUES ('nightly', '0 3 * * *', 'backup', '{}')"
    )
    conn.execute("INSERT INTO pgsched.api_tokens (name, scope, secret_hash) VALUES ('ci', 'admin', sha256('secret'))")
    conn.execute(
        "INSERT INTO pgsched.result_waiters (job_id, backend_pid) VALUES (%s, pg_backend_pid())", [ids["queued"]]
    )
    return ids


def _counts(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in ("jobs", "schedules", "api_tokens", "result_waiters", "workflows", "job_dependencies"):
        row = conn.execute(f"SELECT count(*) AS n FROM pgsched.{table}").fetchone()
        assert row is not None
        out[table] = row["n"]
    out["states"] = conn.execute("SELECT id, state::text AS state FROM pgsched.jobs ORDER BY id").fetchall()
    out["dead_letter"] = conn.execute("SELECT id FROM pgsched.dead_letter").fetchall()
    row = conn.execute("SELECT last_value FROM pgsched.jobs_id_seq").fetchone()
    out["sequence"] = row["last_value"] if row else None
    return out


def _finish(conn: psycopg.Connection[dict[str, Any]], job_id: int, lease: int) -> list[dict[str, Any]]:
    return conn.execute(
        query("job_finish_many"),
        {
            "ids": [job_id],
            "leases": [lease],
            "outcomes": ["succeeded"],
            "results": ['{"ok": true}'],
            "errors": [None],
            "delays": [0.0],
            "finals": [False],
            "snooze_limits": [0],
            "now": None,
        },
    ).fetchall()


@pytest.mark.parametrize("version", [PARTITIONED, RUNNING_SPLIT, DOMAINS])
async def test_a_migration_that_moves_jobs_keeps_every_row_and_everything_still_works(
    empty_dsn: str, tmp_path: Path, version: int
) -> None:
    Migrator(empty_dsn, directory=_migrations_before(tmp_path, version)).migrate()
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT set_config('pgsched.notify', 'off', false)")
        ids = _fill(conn)
        before = _counts(conn)

    applied = Migrator(empty_dsn).migrate()
    assert version in [m.version for m in applied]

    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        assert _counts(conn) == before
        where = {
            r["id"]: r["part"]
            for r in conn.execute("SELECT id, tableoid::regclass::text AS part FROM pgsched.jobs").fetchall()
        }
        assert where[ids["queued"]] == "pgsched.jobs_queued" and where[ids["running"]] == "pgsched.jobs_running"
        assert where[ids["succeeded"]].startswith("pgsched.jobs_done")
        if version == PARTITIONED:  # 0020 gave the finished jobs their purge_at (later inserts keep theirs)
            purge = conn.execute(
                "SELECT purge_at - finished_at AS kept FROM pgsched.jobs WHERE id = %s", [ids["dead"]]
            ).fetchone()
            assert purge is not None and purge["kept"] == timedelta(days=30)  # today's default for dead jobs
        if version == DOMAINS:  # the rules still hold for a migrated row, as a domain's now
            with pytest.raises(psycopg.errors.CheckViolation) as refused, conn.transaction():
                conn.execute("UPDATE pgsched.jobs SET queue = 'Not Valid' WHERE id = %s", [ids["queued"]])
            assert refused.value.diag.constraint_name == "jobs_queue_name_valid"

        # A new job takes the next id of the same sequence.
        new = conn.execute("INSERT INTO pgsched.jobs (task) VALUES ('t') RETURNING id").fetchone()
        assert new is not None and new["id"] == before["sequence"] + 1

        # Claim and finish a migrated queued job.
        conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (1, 'test', 1)")
        conn.execute("UPDATE pgsched.jobs SET run_at = now() + interval '1 hour' WHERE id <> %s", [ids["queued"]])
        claimed = conn.execute(
            query("job_claim_batch"),
            {"queues": ["default"], "limit": 10, "worker_id": 1, "now": None, "running": [], "free": 1},
        ).fetchall()
        assert [c["id"] for c in claimed] == [ids["queued"]]
        done = _finish(conn, ids["queued"], claimed[0]["lease"])
        assert done == [{"id": ids["queued"], "state": "succeeded"}]
        # The migrated running job: its worker still finishes it with the lease it holds.
        assert _finish(conn, ids["running"], 99) == [{"id": ids["running"], "state": "succeeded"}]

        # Read a migrated result; redrive a migrated dead job; a workflow step still releases its dependent.
        result = conn.execute(query("result_get"), {"job_id": ids["succeeded"]}).fetchone()
        assert result is not None and result["result"] == {"answer": 42}
        conn.execute("SELECT pgsched.retry(%s)", [ids["dead"]])
        redriven = conn.execute(
            "SELECT state::text AS s, purge_at FROM pgsched.jobs WHERE id = %s", [ids["dead"]]
        ).fetchone()
        assert redriven == {"s": "queued", "purge_at": None}
        conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [ids["step_a"]])
        step_b = conn.execute("SELECT state::text AS s FROM pgsched.jobs WHERE id = %s", [ids["step_b"]]).fetchone()
        assert step_b == {"s": "queued"}

    # Fire a migrated schedule.
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as leader:
        await leader.execute("UPDATE pgsched.schedules SET next_fire_at = now() - interval '1 second'")
        report = await ScheduleStore(None).schedule_fire_due(leader)
    assert report.fired >= 1
    with psycopg.connect(empty_dsn, row_factory=dict_row) as conn:
        fired = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE schedule_name = 'nightly'").fetchone()
        assert fired is not None and fired["n"] >= 1
