"""Migration 0019 on a database that already holds keyed jobs: each key is held by its job (retention), none lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from pgsched.migrate import Migrator
from pgsched.queries import migrations_dir


def test_upgrading_keeps_every_key_held_by_its_job_whatever_its_state(empty_dsn: str, tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) < 19:
            shutil.copy(path, before / path.name)
    Migrator(empty_dsn, directory=before).migrate()
    with psycopg.connect(empty_dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            """INSERT INTO pgsched.jobs (task, run_key, state, started_at, finished_at)
               VALUES ('t', 'q', 'queued', NULL, NULL), ('t', 'r', 'running', now(), NULL),
                      ('t', 's', 'succeeded', now(), now()), ('t', 'd', 'dead', now(), now()),
                      ('t', 'c', 'cancelled', NULL, now()), ('t', NULL, 'queued', NULL, NULL)"""
        )
        jobs = {r["run_key"]: r["id"] for r in conn.execute("SELECT id, run_key FROM pgsched.jobs").fetchall()}
        Migrator(empty_dsn).migrate()
        held = conn.execute("SELECT run_key, job_id, scope FROM pgsched.run_keys ORDER BY run_key").fetchall()
        assert held == [{"run_key": k, "job_id": jobs[k], "scope": "retention"} for k in sorted(k for k in jobs if k)]
        assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": len(jobs)}
        for key in "qrsdc":  # still held: the old id comes back, nothing is created
            row = conn.execute("SELECT pgsched.enqueue('t', run_key => %s) AS id", [key]).fetchone()
            assert row == {"id": jobs[key]}
        conn.execute("SELECT pgsched.retry(%s)", [jobs["d"]])  # the redrive keeps its own key
        assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone() == {"n": len(jobs)}
