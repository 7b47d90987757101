from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from pgsched.errors import MigrationError
from pgsched.migrate import Migrator, available_migrations
from pgsched.queries import migrations_dir


def test_migrate_applies_every_file_then_is_a_no_op(empty_dsn: str) -> None:
    first = Migrator(empty_dsn).migrate()
    assert [m.version for m in first] == [m.version for m in available_migrations()]
    assert Migrator(empty_dsn).migrate() == []
    assert all(s.applied_at is not None for s in Migrator(empty_dsn).status())


def test_two_concurrent_migrators_both_succeed(empty_dsn: str) -> None:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(Migrator(empty_dsn).migrate())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [r for r in results if isinstance(r, Exception)]
    applied = sorted(len(r) for r in results if isinstance(r, list))
    assert applied == [0, len(available_migrations())]


def test_an_applied_migration_that_was_edited_is_refused(empty_dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    Migrator(empty_dsn, directory=copy).migrate()
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        Migrator(empty_dsn, directory=copy).migrate()


def test_a_failing_migration_leaves_nothing_half_applied(empty_dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    (copy / "9999_break_things.sql").write_text("CREATE TABLE pgsched.half (x int);\nSELECT 1/0;\n")
    with pytest.raises(MigrationError, match="9999_break_things"):
        Migrator(empty_dsn, directory=copy).migrate()
    with psycopg.connect(empty_dsn) as c:
        assert c.execute("SELECT to_regclass('pgsched.half')").fetchone() == (None,)
        assert c.execute("SELECT max(version) FROM pgsched.migrations").fetchone() == (
            max(m.version for m in available_migrations()),
        )


def test_every_table_column_and_view_has_a_comment(dsn: str) -> None:
    with psycopg.connect(dsn) as c:
        missing_rel = c.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'pgsched' AND c.relkind IN ('r', 'p', 'v', 'm')
                  AND obj_description(c.oid, 'pg_class') IS NULL"""
        ).fetchall()
        missing_col = c.execute(
            """SELECT c.relname, a.attname FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'pgsched' AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0
                  AND NOT c.relispartition  -- a partition's columns are its table's, commented there
                  AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL"""
        ).fetchall()
    assert missing_rel == []
    assert missing_col == []
