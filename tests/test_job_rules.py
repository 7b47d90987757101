"""Where the rules of pgsched.jobs live (migration 0052). PostgreSQL parses and plans a table's CHECK constraints
again in every statement that writes a row, for each partition written, and evaluates every one of them for every
row moved between partitions; a domain's constraints are parsed once per session and checked only where a value of
that column is written. So the single-column rules are domains, and the table keeps only the rules that tie columns
together and those of the three columns whose history partitions index them. These tests pin that placement (with
the node text PostgreSQL re-reads per statement as the measure) and that the rules still hold wherever a value is
written: an INSERT, an UPDATE, a COPY. tests/test_input_rules.py ties each constraint to its Python rule."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import db
from pgsched.errors import ValidationError

Conn = psycopg.Connection[dict[str, Any]]

DOMAIN_RULES = {
    "queue": "jobs_queue_name_valid",
    "task": "jobs_task_name_valid",
    "args": "jobs_args_is_object",
    "errors": "jobs_errors_is_array",
    "attempt": "jobs_attempt_not_negative",
    "priority": "jobs_priority_range",
    "max_attempts": "jobs_max_attempts_range",
    "progress": "jobs_progress_range",
    "timeout": "jobs_timeout_positive",
    "concurrency_key": "jobs_concurrency_key_length",
}
TABLE_RULES = {
    "jobs_concurrency_limit_range",
    "jobs_run_key_scope_valid",
    "jobs_run_key_period_valid",
    "jobs_meta_is_object",
    "jobs_tags_valid",
    "jobs_run_key_length",
}
# A value of each domain column that breaks its rule, as SQL.
BAD = {
    "queue": "'Not Valid'",
    "task": "'9task'",
    "args": "'[]'::jsonb",
    "errors": "'{}'::jsonb",
    "attempt": "-1",
    "priority": "1001",
    "max_attempts": "0",
    "progress": "1.5",
    "timeout": "interval '0'",
    "concurrency_key": "''",
}


def test_single_column_rules_are_domain_constraints(conn: Conn) -> None:
    rows = conn.execute(
        """SELECT a.attname AS column_name, c.conname, c.convalidated
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid AND t.typtype = 'd'
             JOIN pg_constraint c ON c.contypid = t.oid AND c.contype = 'c'
            WHERE a.attrelid = 'pgsched.jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped"""
    ).fetchall()
    assert {r["column_name"]: r["conname"] for r in rows} == DOMAIN_RULES


def test_the_table_keeps_only_the_rules_a_domain_cannot_hold(conn: Conn) -> None:
    rows = conn.execute(
        """SELECT conname, length(conbin::text) AS node_text
             FROM pg_constraint WHERE conrelid = 'pgsched.jobs'::regclass AND contype = 'c'"""
    ).fetchall()
    assert {r["conname"] for r in rows} == TABLE_RULES
    # What every writing statement re-reads per partition: 15 KB of node text before 0052.
    assert sum(r["node_text"] for r in rows) < 8_000


def test_every_partition_has_the_parents_types_and_rules(conn: Conn) -> None:
    """A history partition made after 0052 (LIKE pgsched.jobs) has the domains; every partition, the table's rules."""
    mismatched = conn.execute(
        """SELECT c.oid::regclass::text AS part, a.attname
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_attribute p ON p.attrelid = 'pgsched.jobs'::regclass AND p.attname = a.attname
            WHERE a.atttypid <> p.atttypid
              AND (i.inhparent = 'pgsched.jobs'::regclass OR i.inhparent = 'pgsched.jobs_done'::regclass)"""
    ).fetchall()
    assert mismatched == []
    missing = conn.execute(
        """SELECT c.oid::regclass::text AS part, r.conname
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            CROSS JOIN (SELECT conname FROM pg_constraint
                         WHERE conrelid = 'pgsched.jobs'::regclass AND contype = 'c') r
            WHERE (i.inhparent = 'pgsched.jobs'::regclass OR i.inhparent = 'pgsched.jobs_done'::regclass)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = r.conname)"""
    ).fetchall()
    assert missing == []


@pytest.mark.parametrize("column", sorted(BAD))
def test_a_bad_value_is_refused_by_insert_update_and_copy(conn: Conn, column: str) -> None:
    job = conn.execute("INSERT INTO pgsched.jobs (task, concurrency_key) VALUES ('t', 'k') RETURNING id").fetchone()
    assert job is not None
    rule = DOMAIN_RULES[column]
    row = {"task": "'t'", column: BAD[column]}  # a row with every other column valid
    columns, values = ", ".join(row), ", ".join(row.values())
    text = conn.execute(f"SELECT {', '.join(f'({v})::text AS {c}' for c, v in row.items())}").fetchone()
    assert text is not None
    attempts = {
        "insert": f"INSERT INTO pgsched.jobs ({columns}) VALUES ({values})",
        "update": f"UPDATE pgsched.jobs SET {column} = {BAD[column]} WHERE id = {job['id']}",
        "copy": f"COPY pgsched.jobs ({columns}) FROM STDIN",
    }
    for how, statement in attempts.items():
        with pytest.raises(psycopg.errors.CheckViolation) as refused, conn.transaction():
            if how == "copy":
                with conn.cursor().copy(statement) as copy:
                    copy.write_row(list(text.values()))
            else:
                conn.execute(statement)
        assert refused.value.diag.constraint_name == rule, how
    # The error translator still names the field (attempt and errors are written by pgsched alone: no input to name).
    translated = db.pgsched_error(refused.value)
    assert isinstance(translated, ValidationError)
    assert translated.field == (column if column not in ("attempt", "errors") else "job")


def test_a_row_moved_between_partitions_keeps_its_values(dsn: str) -> None:
    """Claim and finish write none of the domain columns but attempt: the row moves, its values come along intact."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        row = c.execute(
            """INSERT INTO pgsched.jobs (task, queue, args, priority, max_attempts, timeout, concurrency_key)
               VALUES ('mod.t:x', 'q.1', '{"a": 1}', -1000, 1000, interval '1 s', 'k')
               RETURNING id, queue, task, args, priority, max_attempts, timeout, concurrency_key"""
        ).fetchone()
        assert row is not None
        c.execute("UPDATE pgsched.jobs SET state = 'running', attempt = attempt + 1 WHERE id = %s", [row["id"]])
        c.execute(
            "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now(), progress = 1 WHERE id = %s", [row["id"]]
        )
        after = c.execute(
            """SELECT id, queue, task, args, priority, max_attempts, timeout, concurrency_key, attempt,
                      tableoid::regclass::text AS part
                 FROM pgsched.jobs WHERE id = %s""",
            [row["id"]],
        ).fetchone()
    assert after is not None
    assert after.pop("attempt") == 1 and after.pop("part").startswith("pgsched.jobs_done")
    assert after == row
    # Plain Python types come back, as before: a domain travels as its base type.
    assert isinstance(after["queue"], str) and isinstance(after["priority"], int) and after["args"] == {"a": 1}
