"""Tasks the acceptance scenarios run in real `pgsched worker` processes.

Every task records its own execution in the ``ledger`` table (see ``tests.acceptance.ledger``),
outside the job row, so duplicates are visible:

- ``plain`` writes its ledger row on its own autocommit connection as it starts, then works:
  an at-least-once execution, so a run on a worker killed before its completion was written
  stays in the ledger (an honest duplicate).
- ``tx`` is transactional: its ledger row commits in the same transaction that marks the job
  succeeded, so a fenced-out (late) completion leaves no row: exactly-once side effects.
- ``tick`` is ``tx`` for cron, with the run key (the instant) in the execution record.
- ``sleeper`` records when it starts and when it ends, for the graceful-shutdown scenario.
- ``poison`` records its start, then SIGKILLs the worker that runs it (the poison pill).
- ``failing`` records its start and fails until a wall-clock instant (a cohort failing together).

With ``PGSCHED_CHAOS_RUNS_FILE`` set, ``plain``, ``tx`` and ``tick`` also append a ``start`` and an ``end``
line (JSON: job, attempt, pid, kind, event, wall-clock t; ``tick`` adds its run key) to that file: a record of
executions outside PostgreSQL, which a database crash cannot take back (the PostgreSQL crash scenario reads it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import Any

import psycopg

from pgsched import Pgsched
from pgsched.context import current_job

app = Pgsched.from_env()

_INSERT = "INSERT INTO ledger (job_id, attempt, worker_pid, kind) VALUES (%s, %s, %s, %s)"
_local = threading.local()
_RUNS_FILE = os.environ.get("PGSCHED_CHAOS_RUNS_FILE")
_runs_fd = os.open(_RUNS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _RUNS_FILE else None


def _run_line(kind: str, event: str, key: str | None = None) -> None:
    """One line per write with O_APPEND: lines of concurrent writers never interleave."""
    if _runs_fd is None:
        return
    job = current_job()
    line = {"job": job.id, "attempt": job.attempt, "pid": os.getpid(), "kind": kind, "event": event, "t": time.time()}
    if key is not None:
        line["key"] = key
    os.write(_runs_fd, (json.dumps(line) + "\n").encode())


def _record(job_id: int, attempt: int, kind: str) -> None:
    """Write the ledger row on this thread's connection. A connection a crash killed is found dead only when used
    (threads of the pool can sit idle for seconds after a restart): as an application would, reconnect and write
    once more. Failing the attempt instead made a retry that the duplicate count took for a second execution."""
    for tries_left in (1, 0):
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(os.environ["PGSCHED_DSN"], autocommit=True, application_name="chaos:ledger")
            _local.conn = conn
        try:
            conn.execute(_INSERT, [job_id, attempt, os.getpid(), kind])
            return
        except psycopg.OperationalError:
            _local.conn = None
            if not tries_left:
                raise  # the attempt fails and is retried: the ledger row is not written


@app.task(max_attempts=50)
def plain(seconds: float = 0.0) -> int:
    """Record this execution on a separate connection (committed at once), then sleep."""
    job = current_job()
    _run_line("plain", "start")
    _record(job.id, job.attempt, "plain")
    if seconds:
        time.sleep(seconds)
    _run_line("plain", "end")
    return os.getpid()


@app.task(transactional=True, max_attempts=50)
async def tx(conn: psycopg.AsyncConnection[Any], seconds: float = 0.0) -> int:
    """Record this execution in the transaction that also marks the job succeeded, then sleep."""
    job = current_job()
    _run_line("tx", "start")
    await conn.execute(_INSERT, [job.id, job.attempt, os.getpid(), "tx"])
    if seconds:
        await asyncio.sleep(seconds)
    _run_line("tx", "end")
    return os.getpid()


@app.task(transactional=True, max_attempts=50)
async def tick(conn: psycopg.AsyncConnection[Any]) -> None:
    """A cron run: ``tx`` with the job's run key (its cron instant) in the execution record, so an instant
    fired under two job ids shows even when one of them was lost with a database."""
    job = current_job()
    row = await (await conn.execute("SELECT run_key FROM pgsched.jobs WHERE id = %s", [job.id])).fetchone()
    key = str(row["run_key"] if isinstance(row, dict) else row[0]) if row else None
    _run_line("tick", "start", key)
    await conn.execute(_INSERT, [job.id, job.attempt, os.getpid(), "tick"])
    _run_line("tick", "end", key)


@app.task(max_attempts=50)
async def sleeper(seconds: float) -> int:
    """Record the start, sleep (cancellable), record the end."""
    job = current_job()
    await asyncio.to_thread(_record, job.id, job.attempt, "start")
    await asyncio.sleep(seconds)
    await asyncio.to_thread(_record, job.id, job.attempt, "end")
    return os.getpid()


@app.task(max_attempts=50)
def poison(seconds: float = 0.0) -> None:
    """Record the start, then kill this worker process: every run of this job costs a worker."""
    job = current_job()
    _record(job.id, job.attempt, "poison")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(max_attempts=8)
def failing(until: float) -> None:
    """Record the start; fail while the wall clock is before ``until``."""
    job = current_job()
    _record(job.id, job.attempt, "failing")
    if time.time() < until:
        raise RuntimeError("still failing")
