"""Plans of named queries as run, and the rows they visit: the plans of statements run inside functions (PL/pgSQL
bodies) come as auto_explain reports them, since EXPLAIN of the outer statement shows such a call as one Function
Scan."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pgsched.queries import query

_AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_level = notice",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_timing = off",
    "SET auto_explain.log_format = json",
)


def report_plans(conn: psycopg.Connection[Any]) -> None:
    """From now on this session reports the plan of every statement it runs, nested ones included, as a notice."""
    for setting in _AUTO_EXPLAIN:
        conn.execute(setting)


async def report_plans_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """``report_plans`` for an async connection."""
    for setting in _AUTO_EXPLAIN:
        await conn.execute(setting)


def with_jit(explained: dict[str, Any]) -> dict[str, Any]:
    """The plan of one EXPLAIN (or auto_explain) JSON result, with its JIT summary under "JIT" if it was compiled."""
    plan: dict[str, Any] = explained["Plan"]
    return {**plan, "JIT": explained["JIT"]} if "JIT" in explained else plan


def jit_compiled(node: dict[str, Any]) -> int:
    """Statements of the plan (it and those nested in it: explain_executed) that were JIT-compiled. A plan with a
    disabled node costs over 1e10, past every JIT threshold, and is then compiled at every call (0.6-1 s)."""
    return int("JIT" in node) + sum(jit_compiled(child) for child in node.get("Plans", []))


@contextmanager
def reported_plans(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], wanted: Callable[[str], bool]
) -> Iterator[list[dict[str, Any]]]:
    """While open, collect the plans reported (see report_plans) of statements whose text ``wanted`` accepts (with
    the JIT compilation of the statement, if any, under "JIT")."""
    plans: list[dict[str, Any]] = []

    def keep(notice: psycopg.errors.Diagnostic) -> None:
        text = notice.message_primary or ""
        if "plan:" in text:
            reported = json.loads(text.split("plan:", 1)[1])
            if wanted(reported["Query Text"]):
                plans.append(with_jit(reported))

    conn.add_notice_handler(keep)
    try:
        yield plans
    finally:
        conn.remove_notice_handler(keep)


_PARAM = re.compile(r"%\((\w+)\)[sb]")  # %(name)b: sent in binary
# Tables (and their partitions: jobs_queued, jobs_running, jobs_done_*) and indexes <table>_...
_COUNTED = ("jobs", "result_waiters")


def prepare(conn: psycopg.Connection[Any], name: str) -> list[str]:
    """PREPARE the named query under its own name; return its parameter names in $n order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PARAM.sub(number, query(name)).replace("%%", "%")
    conn.execute(f"PREPARE {name} AS {text}")
    return names


def rows_visited(node: dict[str, Any]) -> int:
    """Rows the plan looked at in pgsched.jobs and result_waiters: rows each node returned or filtered away, times
    its loops."""
    loops = int(node.get("Actual Loops", 1))
    seen = 0
    on_jobs = str(node.get("Relation Name", "")).startswith(_COUNTED) or str(node.get("Index Name", "")).startswith(
        _COUNTED
    )
    if on_jobs and node["Node Type"] != "ModifyTable":
        seen += int(node["Actual Rows"]) * loops
        seen += int(node.get("Rows Removed by Filter", 0)) * loops
        seen += int(node.get("Rows Removed by Index Recheck", 0)) * loops
    seen += int(node.get("Rows Removed by Join Filter", 0)) * loops
    return seen + sum(rows_visited(child) for child in node.get("Plans", []))


def buffers_used(node: dict[str, Any]) -> int:
    """Shared buffers the plan hit or read (EXPLAIN with BUFFERS: explain_executed(..., buffers=True)), the statements
    run inside functions included (a Function Scan counts them)."""
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def scans(node: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (node type, table or index) the plan reads, e.g. ("Seq Scan", "jobs_queued"), ("Index Scan",
    "jobs_running_idx"), ("Bitmap Index Scan", "jobs_queued_pkey")."""
    read = node.get("Index Name") or node.get("Relation Name")
    own = {(str(node["Node Type"]), str(read))} if read and node["Node Type"] != "ModifyTable" else set()
    return own.union(*(scans(child) for child in node.get("Plans", [])))


def relations_read(node: dict[str, Any]) -> set[str]:
    """Every table the plan reads (the partitions of pgsched.jobs by name)."""
    own = {node["Relation Name"]} if "Relation Name" in node and node["Node Type"] != "ModifyTable" else set()
    return own.union(*(relations_read(child) for child in node.get("Plans", [])))


def _nested(text: str) -> bool:
    """Not the statement itself (reported under its EXPLAIN, or under the PREPARE that made it)."""
    return not text.lstrip().upper().startswith(("EXPLAIN", "PREPARE"))


def explain_executed(
    conn: psycopg.Connection[Any], name: str, names: list[str], params: dict[str, Any], *, buffers: bool = False
) -> dict[str, Any]:
    """Run the prepared statement under EXPLAIN ANALYZE (with BUFFERS if asked) and roll it back: its plan as run,
    with the plans of the statements it ran inside functions as more children (the session must report plans:
    report_plans)."""
    with reported_plans(conn, _nested) as nested, conn.transaction(force_rollback=True):
        arguments = f"({', '.join(['%s'] * len(names))})" if names else ""
        row = (
            psycopg.ClientCursor(conn)  # EXECUTE takes literals, not bound parameters
            .execute(
                f"EXPLAIN (ANALYZE, {'BUFFERS, ' if buffers else ''}FORMAT JSON) EXECUTE {name}{arguments}",
                [params[n] for n in names],
            )
            .fetchone()
        )
    assert row is not None
    plan = with_jit(row[0][0])
    return {**plan, "Plans": [*plan.get("Plans", []), *nested]}
