"""The Python input rules and the tables' CHECK constraints agree on edge values: what ``NewJob``,
``ScheduleSpec``, ``QueueChanges`` and the token store accept is exactly what the table accepts
(cron: Python is the stricter one), and every CHECK constraint that input can break is tied here and
named by the error translator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgsched import db
from pgsched.context import JobContext
from pgsched.job import NewJob, validate_meta, validate_queue, validate_tags
from pgsched.queue_settings import QueueChanges
from pgsched.retention import MAX_KEEP_SECONDS, validate_final_state, validate_keep_seconds, validate_retention_queue
from pgsched.schedule_store import ScheduleSpec
from pgsched.tasks import Task, TaskRegistry
from pgsched.token_store import validate_scope, validate_token_name
from pgsched.workflow import Step, Workflow

Conn = psycopg.Connection[dict[str, Any]]

# Rows that satisfy every constraint; a case overrides one column.
BASE = {
    "jobs": {"task": "t"},
    "schedules": {"name": "n", "cron": "* * * * *", "task": "t"},
    "queues": {"name": "q"},
    "api_tokens": {"name": "n", "scope": "read", "secret_hash": b"x" * 32},
    "workflows": {"kind": "dag"},
    "job_dependencies": {"job_id": 1, "depends_on": 2},
    "tasks": {"name": "t", "worker_id": 1, "queue": "default", "priority": 0, "max_attempts": 5},
    "retention": {"queue": "q", "state": "succeeded", "keep": timedelta(days=1)},
}
# Constraints no input reaches (the code writes these columns itself).
INTERNAL = {
    "jobs_attempt_not_negative",
    "jobs_errors_is_array",
    "workers_role_valid",
    "api_tokens_hash_length",
    "job_stats_watermark_only_row_check",
    "history_count_watermark_only_row_check",
    "job_total_buckets_metric",
    "job_dependencies_not_self",
    "workflows_kind_valid",
    "run_keys_scope_valid",
    "run_keys_held_until_valid",
    "leader_lease_id_check",  # the one-row lease table
    "workers_heartbeat_lease_seconds_check",  # written from the process's own settings
}

NAMES = ["a", "0", "_", "-a", "a-b.c_d:e", "A", "a\n", "\na", "a b", "", "é"]


def _noop() -> None:
    pass


def _long(prefix: str, n: int) -> list[str]:
    return [prefix * (n - 1), prefix * n, prefix * (n + 1)]


def _seconds(v: float) -> timedelta:
    return timedelta(seconds=v)


def _schedule(field: str) -> Callable[[Any], object]:
    base: dict[str, Any] = {"name": "n", "cron": "* * * * *", "task": "t"}

    def build(v: Any) -> object:
        args = {**base, field: v}
        return ScheduleSpec.build(args.pop("name"), args.pop("cron"), args.pop("task"), **args)

    return build


# constraint: (table, column, value for SQL, Python check, edge values, Python only as strict as the table)
CASES: dict[str, tuple[str, str, Callable[[Any], Any], Callable[[Any], object], list[Any], bool]] = {
    "jobs_queue_name_valid": ("jobs", "queue", str, validate_queue, [*NAMES, *_long("q", 63)], True),
    "jobs_task_name_valid": (
        "jobs",
        "task",
        str,
        NewJob.build,
        [*NAMES, "_a", "1a", *_long("t", 200)],
        True,
    ),
    "jobs_args_is_object": ("jobs", "args", Jsonb, lambda v: NewJob.build("t", v), [{}, {"a": 1}, [], 1, "x"], True),
    "jobs_priority_range": (
        "jobs",
        "priority",
        int,
        lambda v: NewJob.build("t", priority=v),
        [-1001, -1000, 0, 1000, 1001],
        True,
    ),
    "jobs_max_attempts_range": (
        "jobs",
        "max_attempts",
        int,
        lambda v: NewJob.build("t", max_attempts=v),
        [0, 1, 1000, 1001],
        True,
    ),
    "jobs_run_key_length": (
        "jobs",
        "run_key",
        str,
        lambda v: NewJob.build("t", run_key=v),
        ["", *_long("k", 512)],
        True,
    ),
    "jobs_run_key_scope_valid": (  # a scope needs a key: the base row has none, so both refuse every scope
        "jobs",
        "run_key_scope",
        str,
        lambda v: NewJob.build("t", run_key_scope=v),
        ["retention", "active", "forever", ""],
        True,
    ),
    "jobs_run_key_period_valid": (
        "jobs",
        "run_key_period",
        _seconds,
        lambda v: NewJob.build("t", run_key_period=v),
        [-1, 0, 0.001, 3600],
        True,
    ),
    "jobs_timeout_positive": (
        "jobs",
        "timeout",
        _seconds,
        lambda v: NewJob.build("t", timeout=v),
        [-1, 0, 0.001, 1],
        True,
    ),
    "jobs_concurrency_key_length": (
        "jobs",
        "concurrency_key",
        str,
        lambda v: NewJob.build("t", concurrency_key=v),
        ["", *_long("c", 200)],
        True,
    ),
    "jobs_concurrency_limit_range": (
        "jobs",
        "concurrency_limit",
        int,
        lambda v: NewJob.build("t", concurrency_key="k", concurrency_limit=v),
        [0, 1, 10_000, 10_001],
        True,
    ),
    "schedules_name_valid": ("schedules", "name", str, _schedule("name"), [*NAMES, "a:b", *_long("s", 128)], True),
    "schedules_cron_fields": (
        "schedules",
        "cron",
        str,
        _schedule("cron"),
        ["* * * * *", "*/10 * * * * *", "* * * *", "* * * * * * *"],
        False,
    ),
    "schedules_task_name_valid": ("schedules", "task", str, _schedule("task"), [*NAMES, *_long("t", 200)], True),
    "schedules_queue_name_valid": ("schedules", "queue", str, _schedule("queue"), [*NAMES, *_long("q", 63)], True),
    "schedules_args_is_object": ("schedules", "args", Jsonb, _schedule("args"), [{}, [], 1], True),
    "schedules_priority_range": ("schedules", "priority", int, _schedule("priority"), [-1001, -1000, 1000, 1001], True),
    "schedules_max_attempts_range": (
        "schedules",
        "max_attempts",
        int,
        _schedule("max_attempts"),
        [0, 1, 1000, 1001],
        True,
    ),
    "schedules_misfire_policy_valid": (
        "schedules",
        "misfire_policy",
        str,
        _schedule("misfire_policy"),
        ["skip", "once", "catch_up", "never", ""],
        True,
    ),
    "schedules_misfire_grace_positive": (
        "schedules",
        "misfire_grace",
        _seconds,
        _schedule("misfire_grace_seconds"),
        [-1, 0, 0.001, 3600],
        True,
    ),
    "queues_name_valid": ("queues", "name", str, validate_queue, [*NAMES, *_long("q", 63)], True),
    "queues_concurrency_range": (
        "queues",
        "concurrency",
        int,
        lambda v: QueueChanges.build({"concurrency": v}),
        [0, 1, 1_000_000, 1_000_001],
        True,
    ),
    "queues_rate_limit_range": (
        "queues",
        "rate_limit",
        int,
        lambda v: QueueChanges.build({"rate_limit": v}),
        [0, 1, 1_000_000, 1_000_001],
        True,
    ),
    "queues_rate_burst_range": (
        "queues",
        "rate_burst",
        int,
        lambda v: QueueChanges.build({"rate_burst": v}),
        [0, 1, 1_000_000, 1_000_001],
        True,
    ),
    "queues_rate_period_range": (
        "queues",
        "rate_period",
        _seconds,
        lambda v: QueueChanges.build({"rate_period_seconds": v}),
        [0.0009, 0.001, 86_400, 86_401],
        True,
    ),
    "api_tokens_name_valid": ("api_tokens", "name", str, validate_token_name, [*NAMES, "a@b", *_long("n", 100)], True),
    "jobs_progress_range": (
        "jobs",
        "progress",
        float,
        JobContext(1, 1, "q", "t").progress,
        [-0.1, 0, 0.5, 1, 1.1, float("nan")],
        True,
    ),
    "jobs_tags_valid": (  # the table checks the count and NULLs; Python also each tag's length
        "jobs",
        "tags",
        list,
        validate_tags,
        [[], ["a"], [f"t{i}" for i in range(32)], [f"t{i}" for i in range(33)], [None]],
        False,
    ),
    "jobs_meta_is_object": ("jobs", "meta", Jsonb, validate_meta, [{}, {"a": 1}, [], 1], True),
    "tasks_name_valid": (
        "tasks",
        "name",
        str,
        lambda v: TaskRegistry().register(Task(v, _noop)),
        [*NAMES, *_long("t", 200)],
        True,
    ),
    "tasks_queue_name_valid": (
        "tasks",
        "queue",
        str,
        lambda v: TaskRegistry().register(Task("t", _noop, queue=v)),
        [*NAMES, *_long("q", 63)],
        True,
    ),
    "tasks_priority_range": (
        "tasks",
        "priority",
        int,
        lambda v: TaskRegistry().register(Task("t", _noop, priority=v)),
        [-1001, -1000, 1000, 1001],
        True,
    ),
    "tasks_max_attempts_range": (
        "tasks",
        "max_attempts",
        int,
        lambda v: TaskRegistry().register(Task("t", _noop, max_attempts=v)),
        [0, 1, 1000, 1001],
        True,
    ),
    "workflows_name_length": ("workflows", "name", str, lambda v: Workflow("dag", v), ["", *_long("w", 200)], True),
    "job_dependencies_policy_valid": (
        "job_dependencies",
        "on_failure",
        str,
        lambda v: Step("t").if_dependency_fails(v),
        ["cancel", "run", "failed", "skip", ""],
        True,
    ),
    "job_dependencies_results_arg_valid": (
        "job_dependencies",
        "results_arg",
        str,
        lambda v: Step("t").receiving(v),
        [*NAMES, "_r", *_long("r", 100)],
        True,
    ),
    "api_tokens_scope_valid": (
        "api_tokens",
        "scope",
        str,
        validate_scope,
        ["read", "write", "admin", "root", ""],
        True,
    ),
    # Python refuses queue * (the leader's defaults row) and a keep under a second: stricter than the table.
    "retention_queue_valid": (
        "retention",
        "queue",
        str,
        validate_retention_queue,
        [*NAMES, "*", *_long("q", 63)],
        False,
    ),
    "retention_state_final": (
        "retention",
        "state",
        str,
        validate_final_state,
        ["succeeded", "dead", "cancelled", "queued", "running", "waiting"],
        True,
    ),
    "retention_keep_range": (
        "retention",
        "keep",
        _seconds,
        validate_keep_seconds,
        [-1, 0, 0.5, 1, MAX_KEEP_SECONDS, MAX_KEEP_SECONDS + 1],
        False,
    ),
}


def python_accepts(check: Callable[[Any], object], value: Any) -> bool:
    try:
        check(value)
    except ValueError:  # ValidationError is one
        return False
    return True


def table_accepts(conn: Conn, table: str, column: str, value: Any, constraint: str) -> bool:
    row = {**BASE[table], column: value}
    if column == "concurrency_limit":
        row["concurrency_key"] = "k"  # a limit needs a key (a constraint of its own)
    statement = sql.SQL("INSERT INTO pgsched.{} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    try:
        with conn.transaction():
            if table == "tasks":  # published by a registered worker
                conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (1, 'h', 1)")
            if table == "retention":  # the defaults rows (queue *) are there already
                conn.execute("DELETE FROM pgsched.retention")
            if table == "job_dependencies":  # both ends are jobs
                conn.execute("INSERT INTO pgsched.jobs (id, task) OVERRIDING SYSTEM VALUE VALUES (1, 't'), (2, 't')")
            conn.execute(statement, list(row.values()))
            raise psycopg.Rollback()
    except psycopg.errors.CheckViolation as exc:
        assert exc.diag.constraint_name == constraint, f"{value!r} broke {exc.diag.constraint_name} instead"
        return False
    return True


def input_constraints(conn: Conn) -> set[str]:
    rows = conn.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'c' AND connamespace = 'pgsched'::regnamespace"
    ).fetchall()
    return {r["conname"] for r in rows} - INTERNAL


def test_every_check_constraint_input_can_break_is_tied_to_a_python_rule(conn: Conn) -> None:
    assert input_constraints(conn) == set(CASES)


def test_the_error_translator_names_the_field_of_every_such_constraint(conn: Conn) -> None:
    unnamed = {c for c in input_constraints(conn) if c not in db._CONSTRAINT_FIELDS}
    assert unnamed == set()


def test_python_and_the_table_agree_on_edge_values(conn: Conn) -> None:
    disagree = []
    for constraint, (table, column, to_sql, check, values, exact) in CASES.items():
        for value in values:
            py, pg = python_accepts(check, value), table_accepts(conn, table, column, to_sql(value), constraint)
            if py != pg and (exact or py):
                disagree.append((constraint, value, {"python": py, "table": pg}))
    assert disagree == []
