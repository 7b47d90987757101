"""Run keys: what one keyed enqueue costs before and after migration 0019 (A/B, alternating rounds in one
run), and the issue's uniqueness load (50 clients enqueue the same 1,000 keys under each scope, with and
without the Redis cache), checked: one job per key, and for active keys no two live jobs per key.

Run it with ``bin/run-key-bench --dsn DSN [--redis URL]``: DSN names a server where it may create and drop
scratch databases (use a private cluster with stock settings for figures). "Before" is the schema of
migrations 0001-0018 with the insert-or-return statement of that version; "after" is the current schema
and ``job_insert``. Figures are medians over ``--runs`` rounds; on a busy machine read them as ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgsched import Settings
from pgsched.migrate import Migrator
from pgsched.queries import migrations_dir, query
from tests.dedupe import test_run_key_scopes_under_load as under_load

# The single-job statement of the last version with a unique index on jobs.run_key (before 0019).
BEFORE_INSERT = """
WITH ins AS (
    INSERT INTO pgsched.jobs (task, args, queue, priority, run_at, run_key, max_attempts, timeout,
                              concurrency_key, concurrency_limit, tags, meta, expires_at)
    VALUES (%(task)s::text, %(args)s::jsonb, %(queue)s::text, %(priority)s::smallint,
            coalesce(%(run_at)s::timestamptz, %(now)s::timestamptz, now()), %(run_key)s::text,
            %(max_attempts)s::int, %(timeout)s::interval, %(concurrency_key)s::text, %(concurrency_limit)s::int,
            %(tags)s::text[], %(meta)s::jsonb, %(expires_at)s::timestamptz)
    ON CONFLICT (run_key) WHERE run_key IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT ins.*, true AS created FROM ins
UNION ALL
SELECT j.*, false AS created FROM pgsched.jobs j
 WHERE %(run_key)s::text IS NOT NULL AND j.run_key = %(run_key)s::text AND NOT EXISTS (SELECT 1 FROM ins)
"""


@contextlib.contextmanager
def scratch_db(admin_dsn: str, migrations: Path | None = None) -> Iterator[str]:
    name = f"pgsched_rkb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        Migrator(dsn, directory=migrations).migrate()
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def params(key: str | None) -> dict[str, Any]:
    return {
        "task": "t", "args": Jsonb({"n": 1}), "queue": "default", "priority": 0, "run_at": None, "now": None,
        "run_key": key, "max_attempts": 5, "timeout": None, "concurrency_key": None, "concurrency_limit": None,
        "tags": [], "meta": Jsonb({}), "expires_at": None, "run_key_scope": None, "run_key_period": None,
        "on_conflict": "existing",
    }  # fmt: skip


def per_call(dsn: str, statement: Any, n: int, case: str) -> tuple[float, float]:
    """Median seconds of one enqueue (without a key, of a new key each time, or of one key already held), and the
    WAL bytes it wrote on average (a count, steady on a busy machine)."""
    tag = uuid.uuid4().hex[:8]
    samples = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.execute(statement, params(f"{tag}-held"))
        wal = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        for i in range(n):
            p = params({"no key": None, "new key": f"{tag}-{i}", "held key": f"{tag}-held"}[case])
            t0 = time.perf_counter()
            conn.execute(statement, p).fetchone()
            samples.append(time.perf_counter() - t0)
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", wal).fetchone()
    assert row is not None
    return statistics.median(samples), float(row[0]) / n


def ab(admin_dsn: str, n: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp)
        for path in migrations_dir().glob("*.sql"):
            if int(path.name[:4]) < 19:
                shutil.copy(path, old / path.name)
        with scratch_db(admin_dsn, old) as before, scratch_db(admin_dsn) as after:
            for case in ("no key", "new key", "held key"):
                a: list[float] = []
                b: list[float] = []
                wa: list[float] = []
                wb: list[float] = []
                statement = query("job_insert" if case == "no key" else "job_insert_keyed")
                for r in range(runs):
                    sides = [(a, wa, before, BEFORE_INSERT), (b, wb, after, statement)]
                    for times, wal, dsn, stmt in sides if r % 2 == 0 else sides[::-1]:  # alternate who goes first
                        seconds, wal_bytes = per_call(dsn, stmt, n, case)
                        times.append(seconds)
                        wal.append(wal_bytes)
                ma, mb = statistics.median(a), statistics.median(b)
                rounds = ", ".join(f"{x / y:.2f}" for x, y in zip(b, a, strict=True))
                print(
                    f"one enqueue, {case}: before {ma * 1e3:.3f} ms, after {mb * 1e3:.3f} ms, "
                    f"after/before {mb / ma:.2f} (rounds: {rounds}); WAL bytes per call before "
                    f"{statistics.median(wa):.0f}, after {statistics.median(wb):.0f}"
                )


def load(admin_dsn: str, redis_url: str | None, clients: int, keys: int) -> None:
    """The issue's load, through the harness of tests/dedupe/test_run_key_scopes_under_load.py at full size."""
    for cache in ("postgres", "redis") if redis_url else ("postgres",):
        for scope, options in under_load.SCOPES.items():
            with scratch_db(admin_dsn) as dsn:
                settings = Settings(dsn=dsn)
                if cache == "redis":
                    settings = settings.with_(redis_url=redis_url, redis_namespace=f"rkb-{uuid.uuid4().hex[:8]}")
                print(f"{scope:9} {cache:8} {measured(settings, options, clients, keys, scope == 'active')}")


def measured(settings: Settings, options: dict[str, Any], clients: int, keys: int, finishing: bool) -> str:
    stop = threading.Event()
    checks = {"samples": 0, "violations": 0}

    def sample(conn: psycopg.Connection[Any]) -> None:
        checks["violations"] += len(conn.execute(under_load.LIVE_DUPLICATES).fetchall())
        checks["samples"] += 1

    dsn = settings.require_dsn()
    side = [under_load.in_background(dsn, stop, sample)]
    if finishing:
        side.append(under_load.in_background(dsn, stop, under_load.finish_some))
    t0 = time.perf_counter()
    seen = under_load.hammer(settings, options, stop, clients=clients, keys=keys)
    elapsed = time.perf_counter() - t0
    for thread in side:
        thread.join()
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute("SELECT count(*) AS jobs, count(DISTINCT run_key) AS keys FROM pgsched.jobs").fetchone()
        live = conn.execute(under_load.LIVE_DUPLICATES).fetchall()
    assert row is not None
    ids = {i for s in seen.values() for i in s}
    return (
        f"{clients}x{keys} keys in {elapsed:.1f} s: jobs {row['jobs']}, keys {row['keys']}, ids given {len(ids)}, "
        f"one id per key {all(len(s) == 1 for s in seen.values())}, "
        f"live duplicates {checks['violations']} in {checks['samples']} samples (+{len(live)} at the end)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--n", type=int, default=2000, help="enqueues per A/B round")
    parser.add_argument("--runs", type=int, default=5, help="A/B rounds")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--skip-ab", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    if not args.skip_ab:
        ab(args.dsn, args.n, args.runs)
    if not args.skip_load:
        load(args.dsn, args.redis, args.clients, args.keys)


if __name__ == "__main__":
    main()
