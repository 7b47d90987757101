"""The checker: counts lost, duplicated and unexpected executions and recovery times from the ledger.

The ``ledger`` table is written by the tasks themselves (``tests.acceptance.chaos_app``), never
by pgsched, so it shows what really ran. ``xact_at`` is the start of the writing transaction:
for a transactional task that is the same instant as the job's ``finished_at``.

Definitions (per scenario, over the ids it enqueued):

- lost: acknowledged (enqueued) but not ``succeeded``, or succeeded with no ledger row for the
  attempt that succeeded;
- duplicated: a job with more than one ledger row; ``unexplained`` duplicates are extra rows
  written by a process that was not killed (or for a transactional task: any extra row);
- unexpected: a ledger row for a job that does not exist (never enqueued by anyone), or for one
  of ``ids`` an attempt the job never had or a row written after the job had finished;
- recovery: from a worker's SIGKILL to the reaper's ``worker_lost`` entry on each of its jobs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["Kill", "Kills", "create_ledger", "emit", "executions", "recoveries", "unexpected_sample"]

Conn = psycopg.Connection[Any]

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    worker_pid int NOT NULL,
    kind text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    xact_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ledger_job_id ON ledger (job_id);
"""


def create_ledger(conn: Conn) -> None:
    conn.execute(LEDGER_DDL)


@dataclass(frozen=True)
class Kill:
    pid: int
    worker_ids: tuple[int, ...]
    at: datetime  # database clock, read just before the signal


@dataclass
class Kills:
    """Every SIGKILL a scenario sent, with the registry ids the victim held."""

    items: list[Kill] = field(default_factory=list)

    def kill(self, conn: Conn, pid: int, sig: int) -> Kill:
        row = conn.execute(
            "SELECT clock_timestamp() AS at, coalesce(array_agg(id), '{}') AS ids FROM pgsched.workers WHERE pid = %s",
            [pid],
        ).fetchone()
        assert row is not None
        os.kill(pid, sig)
        kill = Kill(pid, tuple(_get(row, "ids", 1)), _get(row, "at", 0))
        self.items.append(kill)
        return kill

    @property
    def pids(self) -> list[int]:
        return [k.pid for k in self.items]


def _get(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


_EXECUTIONS = """
WITH ids AS (SELECT unnest(%(ids)s::bigint[]) AS id),
runs AS (
    SELECT l.job_id, l.attempt, l.worker_pid, l.kind, l.xact_at, j.attempt AS final_attempt,
           j.state::text AS state, j.finished_at
      FROM ledger l LEFT JOIN pgsched.jobs j ON j.id = l.job_id
     WHERE l.kind IN ('plain', 'tx') AND (l.job_id = ANY(%(ids)s::bigint[]) OR j.id IS NULL)
),
per_job AS (SELECT job_id, count(*) AS n FROM runs GROUP BY job_id)
SELECT
  (SELECT count(*) FROM ids) AS enqueued,
  (SELECT count(*) FROM ids JOIN pgsched.jobs j USING (id) WHERE j.state = 'succeeded') AS succeeded,
  (SELECT count(*) FROM ids LEFT JOIN pgsched.jobs j USING (id)
    WHERE j.id IS NULL OR j.state <> 'succeeded'
       OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.job_id = ids.id AND r.attempt = j.attempt)) AS lost,
  (SELECT count(*) FROM runs) AS executions,
  (SELECT count(*) FROM per_job WHERE n > 1) AS duplicated,
  (SELECT count(*) FROM runs WHERE kind = 'tx' AND attempt <> final_attempt) AS tx_extra_rows,
  (SELECT count(*) FROM runs WHERE attempt <> final_attempt
      AND NOT (worker_pid = ANY(%(killed)s::int[]))) AS unexplained,
  (SELECT count(*) FROM runs r
    WHERE r.final_attempt IS NULL OR r.attempt > r.final_attempt
       OR r.xact_at > r.finished_at) AS unexpected
"""


def executions(conn: Conn, ids: list[int], killed_pids: list[int]) -> dict[str, int]:
    """Counts over the enqueued ``ids``: see the module docstring."""
    row = conn.execute(_EXECUTIONS, {"ids": ids, "killed": killed_pids}).fetchone()
    assert row is not None
    keys = ["enqueued", "succeeded", "lost", "executions", "duplicated", "tx_extra_rows", "unexplained", "unexpected"]
    return {k: int(_get(row, k, i)) for i, k in enumerate(keys)}


_UNEXPECTED_SAMPLE = """
SELECT l.job_id, l.attempt, l.worker_pid, l.kind, l.at, l.xact_at, j.attempt AS final_attempt,
       j.state::text AS state, j.finished_at, j.errors
  FROM ledger l LEFT JOIN pgsched.jobs j ON j.id = l.job_id
 WHERE l.kind IN ('plain', 'tx')
   AND ((l.job_id = ANY(%(ids)s::bigint[]) AND (l.attempt > j.attempt OR l.xact_at > j.finished_at)) OR j.id IS NULL)
 ORDER BY l.job_id LIMIT 5
"""


def unexpected_sample(conn: Conn, ids: list[int]) -> list[Any]:
    """A few of the rows counted as unexpected, for the failure message."""
    return conn.execute(_UNEXPECTED_SAMPLE, {"ids": ids}).fetchall()


_LOSSES = """
SELECT (e ->> 'worker_id')::bigint AS worker_id, (e ->> 'at')::timestamptz AS at
  FROM pgsched.jobs j, jsonb_array_elements(j.errors) e
 WHERE j.id = ANY(%(ids)s::bigint[]) AND e ->> 'kind' = 'worker_lost'
"""


def recoveries(conn: Conn, ids: list[int], kills: Kills) -> tuple[list[float], int]:
    """Seconds from each kill to the reaper's re-queue of each job of the victim; and reaps of unkilled workers."""
    killed_at = {wid: k.at for k in kills.items for wid in k.worker_ids}
    seconds: list[float] = []
    unkilled = 0
    for row in conn.execute(_LOSSES, {"ids": ids}).fetchall():
        at = killed_at.get(_get(row, "worker_id", 0))
        if at is None:
            unkilled += 1
        else:
            seconds.append((_get(row, "at", 1) - at).total_seconds())
    return seconds, unkilled


def emit(scenario: str, **fields: Any) -> str:
    """Print one JSON line (and append it to $PGSCHED_CHAOS_REPORT when set); returns it."""
    line = json.dumps({"scenario": scenario, **fields}, sort_keys=False, default=str)
    print(f"\n{line}")
    report = os.environ.get("PGSCHED_CHAOS_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(line + "\n")
    return line
