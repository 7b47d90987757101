"""Cron figures of `pgsched bench cron`: one cold leader keeping many every-second schedules on time.

Interface-side tool. ``schedules`` schedules fire every second (``* * * * * *``) in one time zone, and one
``pgsched scheduler`` process, started after they exist, leads. Over ``seconds`` whole seconds from its first fire,
the instants due are counted against the jobs fired (one per schedule and instant; the run keys make a second fire a
no-op), and how late each fire's insert began after its instant. No worker runs: the fired jobs stay queued.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched.bench.workers import scheduler_process, wait_for
from pgsched.queries import query

__all__ = ["cron_run"]

_SETTLE = 2.0  # seconds after the window for the fires of its last instant to commit


def cron_run(dsn: str, *, schedules: int, seconds: int, timezone: str, timeout: float = 120.0) -> dict[str, float]:
    """One run on a fresh database: fired share of the instants due, double fires, lateness p50/p99/max (ms)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("bench_cron_schedules"), {"n": schedules, "timezone": timezone})
        with scheduler_process(dsn) as leader:
            wait_for(conn, [leader], "bench_cron_first_fire", timeout=timeout, every=0.05,
                     failure="the bench scheduler fired nothing in time")  # fmt: skip
            start = _fetch(conn, "bench_now")["start"]
            time.sleep(seconds + 1 + _SETTLE)
        row = _fetch(conn, "bench_cron_fired", {"start": start, "end": start + timedelta(seconds=seconds)})
    due = schedules * seconds
    return {
        "cron.due": float(due),
        "cron.fired": float(row["fired"]),
        "cron.fired_share": row["fired"] / due,
        "cron.double_fires": float(row["fired"] - row["pairs"]),
        "cron.late_p50_ms": float(row["late_p50_ms"]),
        "cron.late_p99_ms": float(row["late_p99_ms"]),
        "cron.late_max_ms": float(row["late_max_ms"]),
    }


def _fetch(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query(name), params or {}).fetchone()
    assert row is not None
    return row
