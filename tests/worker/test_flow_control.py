"""Flow control across real worker processes: global and per-key concurrency, rate limits, pause.

Limits are enforced by the claim in PostgreSQL, so they hold across processes. Each test runs
four `pgsched worker` processes and samples the running set from the database while they work.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tests.support.factories import insert_jobs
from tests.support.processes import free_port, metric_value
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]
Spawn = Callable[..., subprocess.Popen[bytes]]
WORKERS = 4


def count(conn: Conn, where: str = "TRUE") -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM pgsched.jobs WHERE {where}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row["n"])


@contextmanager
def sampled(dsn: str, queue: str) -> Iterator[list[Counter[str]]]:
    """Sample, every few milliseconds, how many jobs of the queue run per concurrency key ('' = none)."""
    samples: list[Counter[str]] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                rows = c.execute(
                    "SELECT coalesce(concurrency_key, '') AS k, count(*) FROM pgsched.jobs"
                    " WHERE state = 'running' AND queue = %s GROUP BY 1",
                    [queue],
                ).fetchall()
                samples.append(Counter(dict(rows)))
                stop.wait(0.003)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(10)


def spawn_workers(spawn_worker: Spawn, *args: str) -> None:
    for _ in range(WORKERS):
        spawn_worker("--concurrency", "8", *args)


def test_a_queue_concurrency_limit_holds_across_four_worker_processes(
    spawn_worker: Spawn, conn: Conn, dsn: str
) -> None:
    conn.execute("INSERT INTO pgsched.queues (name, concurrency) VALUES ('default', 3)")
    insert_jobs(conn, 60, task="sleepy", args={"seconds": 0.05})
    with sampled(dsn, "default") as samples:
        spawn_workers(spawn_worker)
        wait_until(lambda: count(conn, "state = 'succeeded'") == 60, timeout=60)
    peaks = [sum(s.values()) for s in samples]
    assert max(peaks) == 3, f"peak {max(peaks)} over {len(samples)} samples"  # reached, never exceeded


def test_per_key_limits_hold_and_a_busy_key_does_not_slow_the_others(spawn_worker: Spawn, conn: Conn, dsn: str) -> None:
    insert_jobs(conn, 30, task="sleepy", args={"seconds": 0.2}, concurrency_key="busy")  # limit 1: 6 s alone
    insert_jobs(conn, 24, task="sleepy", args={"seconds": 0.05}, concurrency_key="pair", concurrency_limit=2)
    others = [
        insert_jobs(conn, 1, task="sleepy", args={"seconds": 0.05}, concurrency_key=f"c{i}")[0] for i in range(40)
    ]
    plain = insert_jobs(conn, 40, task="sleepy", args={"seconds": 0.05})
    with sampled(dsn, "default") as samples:
        spawn_workers(spawn_worker)
        wait_until(lambda: count(conn, f"state = 'succeeded' AND id = ANY(ARRAY{others + plain})") == 80, timeout=60)
        busy_left = count(conn, "concurrency_key = 'busy' AND state = 'queued'")
        wait_until(lambda: count(conn, "state = 'succeeded'") == 134, timeout=60)
    assert busy_left >= 15, f"the other keys waited behind the busy key ({busy_left} of its jobs left)"
    assert max(s["busy"] for s in samples) == 1
    assert max(s["pair"] for s in samples) == 2
    assert max(max((n for k, n in s.items() if k.startswith("c")), default=0) for s in samples) == 1
    assert max(s[""] for s in samples) > 1  # keyless jobs are not limited


def test_a_rate_limit_of_50_per_second_starts_500_jobs_in_10_seconds(spawn_worker: Spawn, conn: Conn) -> None:
    conn.execute("INSERT INTO pgsched.queues (name, rate_limit, rate_period) VALUES ('default', 50, '1 second')")
    insert_jobs(conn, 1500, task="noop")
    spawn_workers(spawn_worker)
    wait_until(lambda: count(conn, "started_at IS NOT NULL") > 0, timeout=20)
    wait_until(
        lambda: count(conn, "started_at >= (SELECT min(started_at) + interval '10.5 s' FROM pgsched.jobs)") > 0,
        timeout=30,
    )  # the window has closed: a start after its end was seen
    row = conn.execute(
        "WITH f AS (SELECT min(started_at) AS t0 FROM pgsched.jobs)"
        " SELECT count(*) AS n FROM pgsched.jobs, f WHERE started_at >= f.t0 AND started_at < f.t0 + interval '10 s'"
    ).fetchone()
    assert row is not None
    # 500 tokens in 10 s plus a burst of 3: the ceiling is the guarantee. The bucket holds at most the burst, so
    # a token earned while no worker is back to claim is lost, never replayed; how many are lost depends on how
    # fast the workers cycle: 464-473 started on this 2-core VM before, 325-338 once the VM ran ~2.5x slower (the
    # code of the stop before gave 337 there too). The floor only says the limiter keeps starting jobs.
    assert 250 <= row["n"] <= 525, row["n"]


def test_a_paused_queue_starts_nothing_until_resumed(spawn_worker: Spawn, conn: Conn) -> None:
    conn.execute("SELECT pgsched.pause_queue('default')")
    ids = insert_jobs(conn, 20, task="noop")
    ports = [free_port() for _ in range(WORKERS)]
    for port in ports:
        spawn_worker("--concurrency", "8", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    wait_until(lambda: _idle_workers(conn) == WORKERS, timeout=60)
    # Every worker claims twice more (its poll rounds) after it marked itself idle: each claim skipped the queue.
    claims = {port: _claims(port) for port in ports}
    wait_until(lambda: all(_claims(port) >= claims[port] + 2 for port in ports), timeout=60)
    assert count(conn, "state = 'queued'") == 20
    conn.execute("SELECT pgsched.resume_queue('default')")
    wait_until(lambda: count(conn, f"state = 'succeeded' AND id = ANY(ARRAY{ids})") == 20, timeout=20)


def _claims(port: int) -> float:
    return metric_value(port, "pgsched_worker_claims_total") or 0.0


def _idle_workers(conn: Conn) -> int:
    row = conn.execute("SELECT count(DISTINCT worker_id) AS n FROM pgsched.waiting_workers").fetchone()
    assert row is not None
    return int(row["n"])
