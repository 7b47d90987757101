"""The execution record outside PostgreSQL (``PGSCHED_CHAOS_RUNS_FILE``) and what it says about crashes.

``tests.acceptance.chaos_app`` appends a ``start`` and an ``end`` line per execution of ``plain`` and
``tx``. An execution is "in flight at a crash" when it overlaps the crash's window: from ``before``
seconds ahead of the stop (commits made with ``synchronous_commit = off`` in that time may be lost)
to ``after`` seconds past the first answer of the restarted server (a worker starts jobs of a lost
claim until its liveness notices the crash). A job may run more than once only if every run but one
was in flight at a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Crash", "Run", "duplicates", "read_runs", "started_in_outages"]


@dataclass(frozen=True)
class Crash:
    began: float  # wall clock of the stop
    ready: float  # wall clock of the first statement the restarted server answered


@dataclass(frozen=True)
class Run:
    job: int
    attempt: int
    pid: int
    start: float
    end: float | None  # None: the run raised (its database write failed) or never ended


def read_runs(path: Path) -> list[Run]:
    """Pair each ``start`` line with the next ``end`` line of the same job, attempt and process."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    open_runs: dict[tuple[int, int, int], list[float]] = {}
    runs: list[Run] = []
    for line in sorted(lines, key=lambda item: item["t"]):
        key = (line["job"], line["attempt"], line["pid"])
        if line["event"] == "start":
            open_runs.setdefault(key, []).append(line["t"])
        elif open_runs.get(key):
            runs.append(Run(*key, start=open_runs[key].pop(0), end=line["t"]))
    runs.extend(Run(*key, start=t, end=None) for key, starts in open_runs.items() for t in starts)
    return runs


def _in_flight(run: Run, crashes: list[Crash], before: float, after: float, run_seconds: float) -> bool:
    end = run.end if run.end is not None else run.start + run_seconds
    return any(run.start <= c.ready + after and end >= c.began - before for c in crashes)


def duplicates(
    runs: list[Run], crashes: list[Crash], *, before: float, after: float, run_seconds: float
) -> dict[str, int]:
    """Jobs that ran more than once; those explained by crashes; those that ran to the end twice or more."""
    by_job: dict[int, list[Run]] = {}
    for run in runs:
        by_job.setdefault(run.job, []).append(run)
    duplicated = {job: rs for job, rs in by_job.items() if len(rs) > 1}
    explained = sum(
        1 for rs in duplicated.values() if sum(not _in_flight(r, crashes, before, after, run_seconds) for r in rs) <= 1
    )
    completed_twice = sum(1 for rs in duplicated.values() if sum(r.end is not None for r in rs) > 1)
    return {
        "duplicated": len(duplicated),
        "duplicates_in_flight_at_a_crash": explained,
        "duplicates_unexplained": len(duplicated) - explained,
        "ran_to_the_end_twice": completed_twice,
        "extra_runs": sum(len(rs) - 1 for rs in duplicated.values()),
    }


def started_in_outages(runs: list[Run], crashes: list[Crash]) -> int:
    """Runs that started while the server was down (between a stop and the restarted server's first answer)."""
    return sum(1 for r in runs if any(c.began <= r.start <= c.ready for c in crashes))
