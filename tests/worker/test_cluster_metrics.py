"""The API's cluster-wide job metrics agree with the sum of the counters of real `pgsched worker` processes."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from pgsched.config import Settings
from pgsched.job_stats import SETTLE
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.factories import insert_jobs
from tests.support.processes import free_port
from tests.support.rollup import rollup_caught_up
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]
Spawn = Callable[..., subprocess.Popen[bytes]]
Samples = dict[tuple[str, str, str, str], float]  # (sample name, queue, task, le) -> value
COUNTERS = ("started", "succeeded", "failed", "retried", "dead", "cancelled")


def samples(text: str) -> Samples:
    """Every sample with queue and task labels, summed over whatever other labels it has."""
    out: defaultdict[tuple[str, str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "queue" in s.labels and "task" in s.labels:
                out[(s.name, s.labels["queue"], s.labels["task"], s.labels.get("le", ""))] += s.value
    return dict(out)


def scrape(url: str, token: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def summed(texts: list[str]) -> Samples:
    total: defaultdict[tuple[str, str, str, str], float] = defaultdict(float)
    for text in texts:
        for key, value in samples(text).items():
            total[key] += value
    return dict(total)


def value(s: Samples, name: str, task: str, le: str = "") -> float:
    """The sample, which must be there (a missing label set would otherwise pass as 0 == 0)."""
    return s[(name, "default", task, le)]


def count(conn: Conn, where: str) -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM pgsched.jobs WHERE {where}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row["n"])


def test_cluster_counters_on_the_api_equal_the_sum_of_the_workers_counters(
    spawn_worker: Spawn, conn: Conn, dsn: str, settings: Settings, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    for port in ports:  # --no-scheduler: no leader, so the test decides when the rollup passes
        spawn_worker("--concurrency", "4", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    insert_jobs(conn, 30, task="sleepy", args={"seconds": 0.2})
    insert_jobs(conn, 20, task="noop")
    insert_jobs(conn, 6, task="fail_first", args={"failures": 2})
    insert_jobs(conn, 4, task="fail_always")  # 3 attempts, then dead
    for i in range(3):  # each snoozes once (the attempt is given back), then succeeds
        insert_jobs(conn, 1, task="snooze_once", args={"marker": str(tmp_path / f"snoozed-{i}")})
    [running] = insert_jobs(conn, 1, task="wait_for_cancel", args={"marker": str(tmp_path / "cancelled")})
    [waiting] = insert_jobs(conn, 1, task="noop", run_at="2999-01-01T00:00:00+00:00")
    wait_until(lambda: count(conn, f"id = {running} AND state = 'running'") == 1, timeout=60)
    conn.execute("SELECT pgsched.cancel(%s), pgsched.cancel(%s)", [running, waiting])
    wait_until(lambda: count(conn, "state IN ('queued', 'running')") == 0, timeout=90, message="jobs left")

    def workers_done() -> Samples | None:
        # The completer counts a batch just after writing it: wait until every finished job is counted.
        workers = summed([scrape(f"http://127.0.0.1:{port}/metrics") for port in ports])
        ended = sum(v for (name, *_), v in workers.items() if name.endswith(("succeeded_total", "dead_total")))
        ended += sum(v for (name, *_), v in workers.items() if name == "pgsched_jobs_cancelled_total")
        return workers if ended == 30 + 20 + 6 + 4 + 3 + 1 else None

    workers = wait_until(workers_done, timeout=10)
    db_now = conn.execute("SELECT now() AS now").fetchone()
    assert db_now is not None

    # what the leader's prune rounds do, once the settle delay is behind
    asyncio.run(rollup_caught_up(dsn, now=db_now["now"] + SETTLE + timedelta(seconds=1)))
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api:
        cluster = samples(scrape(f"{api.url}/metrics", ADMIN_TOKEN))

    tasks = ("sleepy", "noop", "fail_first", "fail_always", "snooze_once", "wait_for_cancel")
    for task in tasks:
        for counter in COUNTERS:
            mine, theirs = f"pgsched_cluster_jobs_{counter}_total", f"pgsched_jobs_{counter}_total"
            expected = value(workers, theirs, task) + (1 if (task, counter) == ("noop", "cancelled") else 0)
            assert value(cluster, mine, task) == expected, (task, counter)  # the waiting job: cluster only
    assert value(cluster, "pgsched_cluster_jobs_failed_total", "fail_first") == 12
    assert value(cluster, "pgsched_cluster_jobs_dead_total", "fail_always") == 4
    assert value(cluster, "pgsched_cluster_jobs_started_total", "snooze_once") == 6  # the snoozed runs too
    # Single-attempt tasks: one wait per job, measured the same way (run_at to claim) on both sides.
    for task in ("sleepy", "noop"):
        assert value(workers, "pgsched_job_wait_seconds_bucket", task, "+Inf") == (30 if task == "sleepy" else 20)
        for le in ("0.001", "0.01", "0.1", "1.0", "+Inf"):
            bucket = ("pgsched_cluster_job_wait_seconds_bucket", "pgsched_job_wait_seconds_bucket")
            assert value(cluster, bucket[0], task, le) == value(workers, bucket[1], task, le), (task, le)
        runs = value(cluster, "pgsched_cluster_job_duration_seconds_count", task)
        assert runs == value(workers, "pgsched_job_duration_seconds_count", task) == (30 if task == "sleepy" else 20)
    assert value(cluster, "pgsched_cluster_job_duration_seconds_bucket", "sleepy", "0.1") == 0  # each ran 0.2 s
    assert value(cluster, "pgsched_cluster_job_duration_seconds_count", "fail_always") == 4  # the last attempts
