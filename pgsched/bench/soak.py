"""`pgsched bench soak`: a steady enqueue at about 60 % of the measured maximum, for minutes.

The maximum is measured as the soak will run, not as a drain alone: the workers' finishes per second while the
same producers enqueue flat out on the same machine (they share its cores: 60 % of a drain measured alone was
more than two cores could enqueue and drain together, and the backlog grew without end).

Interface-side tool. Producers (threads, one app each) enqueue at a fixed total rate while worker processes,
leader candidates too (the pruner drops finished jobs ``--retention`` seconds after they finish, in time
partitions ``--partition-seconds`` wide), drain with autovacuum as the server has it. Every ``interval``
seconds one sample: throughput, enqueue->start p50/p99 (database clock), table+index size (in all and of each
pgsched table), dead tuples, autovacuum runs, the producers' own call times and, when loaded,
pg_stat_statements counters.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from pgsched.app import Pgsched
from pgsched.bench.scratch import Databases
from pgsched.bench.workers import QUEUE, wait_until_waiting, worker_processes
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from pgsched.queries import query

__all__ = ["SoakOptions", "Sample", "soak"]

TICK = 0.05
FLAT_OUT_CALL = 500  # jobs per enqueue call of a producer with no rate (the maximum's measurement)
MAX_WARMUP = 5.0  # seconds of the flat-out run before its window opens
# A utility statement, not PREPAREd, so not a named query.
_STATEMENTS_EXTENSION = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    rate: float | None = None
    load: float = 0.6
    producers: int = 4
    workers: int = 1
    concurrency: int = 10
    interval: float = 10.0
    retention: float = 60.0
    max_seconds: float = 20.0  # length of the window in which the maximum is measured
    # Width of the time partitions of finished jobs: retention drops whole partitions, so a soak whose
    # retention is shorter than the product's default width (1 day) needs narrower ones to see any drop.
    partition_seconds: float | None = None


@dataclass
class Sample:
    at: float
    jobs_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    total_bytes: int
    dead: int
    autovacuums: int
    autoanalyzes: int
    enqueue_call_ms: float | None
    clock: datetime
    statements: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    # name -> (table+index+toast bytes, dead tuples) of every pgsched table (time partitions summed as jobs_done).
    relations: dict[str, tuple[int, int]] = field(default_factory=dict)
    vacuums: int = 0  # not by autovacuum: the leader's of the live partitions (pgsched.live_vacuum)


class _Producers:
    """Threads that enqueue ``rate`` jobs/s in total, in small batches every TICK (``rate`` None: flat out, one call
    of FLAT_OUT_CALL jobs after another); they time their calls."""

    def __init__(self, dsn: str, rate: float | None, count: int) -> None:
        self._dsn, self._rate, self._stop = dsn, None if rate is None else rate / count, threading.Event()
        self._lock = threading.Lock()
        self._calls: list[float] = []
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, name=f"bench-producer-{i}") for i in range(count)]

    def __enter__(self) -> _Producers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def take_call_ms(self) -> float | None:
        """Mean ms per enqueue call since the last take; raises what stopped a producer."""
        if self._error is not None:
            raise ConfigurationError(f"a soak producer stopped: {self._error}")
        with self._lock:
            calls, self._calls = self._calls, []
        return sum(calls) / len(calls) if calls else None

    def _run(self) -> None:
        app = Pgsched(settings=Settings(dsn=self._dsn))
        started, sent = time.perf_counter(), 0
        try:
            while not self._stop.wait(TICK if self._rate is not None else 0):
                due = FLAT_OUT_CALL if self._rate is None else int((time.perf_counter() - started) * self._rate) - sent
                if due <= 0:
                    continue
                call = time.perf_counter()
                app.enqueue_many([{"task": "noop", "queue": QUEUE}] * due)
                with self._lock:
                    self._calls.append((time.perf_counter() - call) * 1000)
                sent += due
        except Exception as exc:  # reported by the sampler: a silent producer would fake a low rate
            self._error = exc
        finally:
            app.close()


def _statements(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, int, float]]:
    out: dict[str, tuple[str, int, float]] = {}
    with conn.cursor() as cur, cur.copy(query("bench_statement_times")) as copy:
        copy.set_types(["int8", "text", "int8", "float8"])
        for queryid, text, calls, total in copy.rows():
            out[str(queryid)] = (text, int(calls), float(total))
    return out


def _relations(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    rows = conn.execute(query("bench_relation_sizes")).fetchall()
    return {str(name): (int(size), int(dead)) for name, size, dead in rows}


def _clock(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(query("bench_clock")).fetchone()
    if row is None:
        raise ConfigurationError("the server returned no clock")
    now: datetime = row[0]
    return now


def _sample(
    conn: psycopg.Connection[Any], since: datetime, started: float, call_ms: float | None, statements: bool
) -> Sample:
    now = _clock(conn)
    window = {"since": since, "until": now, "queue": QUEUE}
    n, p50, p99 = conn.execute(query("bench_start_latency"), window).fetchone() or (0, None, None)
    table = conn.execute(query("bench_table_stats")).fetchone() or (0,) * 10
    return Sample(
        at=round(time.perf_counter() - started, 1), jobs_per_s=n / max((now - since).total_seconds(), 1e-9),
        p50_ms=p50, p99_ms=p99, total_bytes=int(table[0]), dead=int(table[2]), autovacuums=int(table[3]),
        autoanalyzes=int(table[4]), vacuums=int(table[9]), enqueue_call_ms=call_ms, clock=now,
        statements=_statements(conn) if statements else {}, relations=_relations(conn),
    )  # fmt: skip


def soak(
    databases: Databases, options: SoakOptions, *, statements: bool, emit: Callable[[Sample], None]
) -> dict[str, Any]:
    """Run the soak; ``emit`` gets every sample as it is taken; returns the rate, samples and summary."""
    rate, measured = options.rate, None
    env = _worker_env(options)
    if rate is None:
        measured = _max_with_producers(databases, options, env)
        rate = options.load * measured
    dsn = databases.clone("soak")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if statements:
                conn.execute(_STATEMENTS_EXTENSION)
            procs = worker_processes(dsn, options.workers, concurrency=options.concurrency, scheduler=True, env=env)
            with procs as started_procs:
                wait_until_waiting(conn, started_procs)
                samples = _run(conn, dsn, rate, options, statements=statements, emit=emit)
    finally:
        databases.drop(dsn)
    return {"rate": rate, "measured_max_jobs_per_s": measured, "samples": samples, "summary": summarize(samples)}


def _worker_env(options: SoakOptions) -> dict[str, str]:
    """The soak's settings for its workers (leader candidates: the pruner runs in them)."""
    # Every finished state gets the retention: a longer one (dead: 30 days by default) would make the leader keep
    # partitions that far ahead, hundreds of them once they are narrow.
    env = {f"PGSCHED_RETENTION_{state}_SECONDS": str(options.retention) for state in ("SUCCEEDED", "CANCELLED", "DEAD")}
    env["PGSCHED_PRUNE_INTERVAL_SECONDS"] = str(min(10.0, options.retention / 2))
    if options.partition_seconds is not None:
        env["PGSCHED_HISTORY_PARTITION_SECONDS"] = str(options.partition_seconds)
    return env


def _max_with_producers(databases: Databases, options: SoakOptions, env: dict[str, str]) -> float:
    """Jobs/s the soak's workers finish while its producers enqueue flat out, in a scratch database of its own:
    the most this machine can enqueue and drain at once (from below: producers at a steady rate take less)."""
    dsn = databases.clone("soakmax")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            procs = worker_processes(dsn, options.workers, concurrency=options.concurrency, scheduler=True, env=env)
            with procs as started_procs:
                wait_until_waiting(conn, started_procs)
                with _Producers(dsn, None, options.producers) as producers:
                    time.sleep(MAX_WARMUP)
                    since = _clock(conn)
                    time.sleep(options.max_seconds)
                    until = _clock(conn)
                    producers.take_call_ms()  # raises what stopped a producer: a silent one would fake a low max
                row = conn.execute(query("bench_start_latency"), {"since": since, "until": until, "queue": QUEUE})
                finished = int((row.fetchone() or (0,))[0])
    finally:
        databases.drop(dsn)
    return finished / max((until - since).total_seconds(), 1e-9)


def _run(conn: psycopg.Connection[Any], dsn: str, rate: float, options: SoakOptions, *, statements: bool,
         emit: Callable[[Sample], None]) -> list[Sample]:  # fmt: skip
    """Producers at ``rate`` for ``options.minutes``; a sample every ``options.interval`` seconds."""
    samples: list[Sample] = []
    with _Producers(dsn, rate, options.producers) as producers:
        started = time.perf_counter()
        since = _clock(conn)
        deadline = started + options.minutes * 60
        while time.perf_counter() < deadline:
            time.sleep(min(options.interval, max(0.0, deadline - time.perf_counter())))
            sample = _sample(conn, since, started, producers.take_call_ms(), statements)
            samples.append(sample)
            emit(sample)
            since = sample.clock
    return samples


def _window(samples: list[Sample]) -> int:
    """Samples in the first / last window: 5 minutes, or a third of a shorter soak."""
    if not samples:
        return 0
    per_sample = samples[0].at if samples[0].at > 0 else 1.0
    return max(1, min(int(300 / per_sample), len(samples) // 3))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _statement_means(first: Sample, last: Sample) -> dict[str, tuple[str, float, int]]:
    """Each statement's (text, mean ms, calls) between two samples."""
    out = {}
    for key, (text, calls, total) in last.statements.items():
        _, calls0, total0 = first.statements.get(key, (text, 0, 0.0))
        if calls > calls0:
            out[key] = (text, (total - total0) / (calls - calls0), calls - calls0)
    return out


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Size growth after the first window, p99 and call times last window vs first, statement means."""
    w = _window(samples)
    if not w:
        return {}
    head, tail = samples[:w], samples[-w:]
    warm_max = max(s.total_bytes for s in head)
    after_max = max(s.total_bytes for s in samples[w:]) if len(samples) > w else warm_max
    first_p99, last_p99 = _mean([s.p99_ms for s in head]), _mean([s.p99_ms for s in tail])
    before = _statement_means(samples[0], head[-1]) if samples[0].statements else {}
    after = _statement_means(tail[0], samples[-1]) if samples[-1].statements else {}
    # Every window's mean in turn (the last may be shorter): a step in the first window only (tables filling up to
    # their retention) reads differently from a slope that lasts.
    points = [0, *range(w - 1, len(samples) - 1, w), len(samples) - 1]
    windows = [_statement_means(samples[a], samples[b]) for a, b in itertools.pairwise(points) if b > a]
    # Calls beside each mean: a leader statement that summarises what finished since its last call (a rollup) takes
    # longer per call when it is called less often; its time per window then tells whether it really slowed.
    statements = [
        {
            "query": text,
            "first_mean_ms": before[key][1],
            "last_mean_ms": mean,
            "first_calls": before[key][2],
            "last_calls": calls,
            "window_means_ms": [m[key][1] if key in m else None for m in windows],
        }
        for key, (text, mean, calls) in after.items()
        if key in before
    ]
    return {
        "window_s": round(samples[w - 1].at, 1),
        "size_first_window_max_bytes": warm_max,
        "size_after_max_bytes": after_max,
        "size_growth_after_first_window_pct": 100.0 * (after_max - warm_max) / warm_max if warm_max else 0.0,
        "p99_first_ms": first_p99,
        "p99_last_ms": last_p99,
        "enqueue_call_first_ms": _mean([s.enqueue_call_ms for s in head]),
        "enqueue_call_last_ms": _mean([s.enqueue_call_ms for s in tail]),
        "statements": sorted(statements, key=lambda s: -s["last_mean_ms"]),
    }
