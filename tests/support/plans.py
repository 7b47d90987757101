"""Plans of statements run inside functions (PL/pgSQL bodies), as auto_explain reports them: EXPLAIN of the outer
statement shows such a call as one Function Scan."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

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


@contextmanager
def reported_plans(conn: psycopg.Connection[Any], wanted: Callable[[str], bool]) -> Iterator[list[dict[str, Any]]]:
    """While open, collect the plans reported (see report_plans) of statements whose text ``wanted`` accepts."""
    plans: list[dict[str, Any]] = []

    def keep(notice: psycopg.errors.Diagnostic) -> None:
        text = notice.message_primary or ""
        if "plan:" in text:
            reported = json.loads(text.split("plan:", 1)[1])
            if wanted(reported["Query Text"]):
                plans.append(reported["Plan"])

    conn.add_notice_handler(keep)
    try:
        yield plans
    finally:
        conn.remove_notice_handler(keep)
