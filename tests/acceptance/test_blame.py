"""Fair blame and rescue: real workers SIGKILLed mid-batch, a poison pill, a worker SIGSTOPped past its lease.

A worker loss is charged only to jobs that worker had started; prefetched jobs go back uncharged,
in their old place (run_at kept), and rescued jobs restart ahead of a long backlog.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cluster, env_int, knob, live_workers, scalar
from tests.acceptance.ledger import Kills, emit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.acceptance

Conn = psycopg.Connection[Any]

_INSERT = """
INSERT INTO pgsched.jobs (task, args, run_at)
SELECT %(task)s::text, jsonb_build_object('seconds', %(seconds)s::float8),
       now() - make_interval(secs => %(age)s::float8)
  FROM generate_series(1, %(n)s::int)
RETURNING id
"""


def enqueue(db: Conn, n: int, *, task: str = "plain", seconds: float = 0.0, age: float = 0.0) -> list[int]:
    rows = db.execute(_INSERT, {"task": task, "seconds": seconds, "n": n, "age": age}).fetchall()
    return [r["id"] for r in rows]


def ran(db: Conn, ids: list[int], pid: int) -> set[int]:
    rows = db.execute("SELECT DISTINCT job_id FROM ledger WHERE job_id = ANY(%s) AND worker_pid = %s", [ids, pid])
    return {r["job_id"] for r in rows.fetchall()}


def jobs(db: Conn, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = db.execute(
        "SELECT id, state::text AS state, attempt, returns, run_at, worker_id, errors FROM pgsched.jobs"
        " WHERE id = ANY(%s)",
        [ids],
    ).fetchall()
    return {r["id"]: dict(r) for r in rows}


def losses(row: dict[str, Any]) -> int:
    return sum(1 for e in row["errors"] if e.get("kind") == "worker_lost")


def test_a_worker_killed_mid_batch_is_charged_only_for_started_jobs_and_its_prefetch_goes_back_in_place(
    cluster: Cluster, db: Conn
) -> None:
    victim = cluster.worker("--no-scheduler", "--concurrency", "10")
    wait_until(lambda: live_workers(db) == 1, timeout=60, message="worker did not register")
    ids = enqueue(db, 40, seconds=30.0)
    before = {i: r["run_at"] for i, r in jobs(db, ids).items()}
    wait_until(lambda: len(ran(db, ids, victim.pid)) == 10, timeout=30, message="ten jobs did not start")
    held = [i for i, r in jobs(db, ids).items() if r["state"] == "running"]
    assert len(held) > 10, "the worker holds prefetched jobs beside the ten it runs"
    Kills().kill(db, victim.pid, signal.SIGKILL)
    victim.wait(10)
    started = ran(db, ids, victim.pid)
    cluster.scheduler()
    wait_until(lambda: all(r["state"] == "queued" for r in jobs(db, held).values()), timeout=30, message="not reaped")
    after = jobs(db, held)
    charged = {i for i, r in after.items() if losses(r)}
    emit("killed_mid_batch", held=len(held), started=len(started), charged=len(charged))
    assert charged == started, "a loss must be charged to exactly the jobs that had started"
    for i, row in after.items():
        assert row["run_at"] == before[i], "a rescued or returned job keeps its place in line"
        assert row["attempt"] == (1 if i in started else 0)
        assert row["returns"] == (0 if i in started else 1)


def test_jobs_of_a_killed_worker_restart_within_lease_reaper_and_poll_ahead_of_a_long_backlog(
    cluster: Cluster, db: Conn
) -> None:
    cluster.scheduler()
    victim = cluster.worker("--no-scheduler", "--concurrency", "4")
    wait_until(lambda: live_workers(db) == 2, timeout=60, message="processes did not register")
    ids = enqueue(db, 4, seconds=30.0, age=60.0)  # in hand when the worker dies
    wait_until(lambda: len(ran(db, ids, victim.pid)) == 4, timeout=30, message="the four did not start")
    backlog = enqueue(db, 3000, seconds=0.2)  # 150 s of work for the next worker: a long line
    kill = Kills().kill(db, victim.pid, signal.SIGKILL)
    victim.wait(10)
    cluster.worker("--no-scheduler", "--concurrency", "4")
    bound = knob("PGSCHED_LEASE_SECONDS") + knob("PGSCHED_REAPER_INTERVAL_SECONDS") + knob("PGSCHED_POLL_SECONDS")
    margin = 5.0  # a busy shared 2-core machine: process start-up and scheduling
    wait_until(
        lambda: (
            scalar(db, "SELECT count(DISTINCT job_id) AS v FROM ledger WHERE job_id = ANY(%s) AND attempt = 2", [ids])
            == 4
        ),
        timeout=bound + margin + 30,
        message="the rescued jobs did not restart",
    )
    restart = scalar(
        db,
        "SELECT extract(epoch FROM max(at) - %s::timestamptz)::float8 AS v FROM ledger"
        " WHERE job_id = ANY(%s) AND attempt = 2",
        [kill.at, ids],
    )
    done = scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE id = ANY(%s) AND state = 'succeeded'", [backlog])
    emit("rescue_first", restart_s=round(restart, 2), bound_s=bound, backlog_done_before=done)
    assert restart <= bound + margin
    assert done < len(backlog) / 2, "the rescued jobs must not wait for the backlog"


def test_a_poison_pill_goes_dead_and_no_innocent_job_does(cluster: Cluster, db: Conn) -> None:
    env = {"PGSCHED_MAX_WORKER_LOSSES": "3"}
    cluster.scheduler(env=env)
    workers = [cluster.worker("--no-scheduler", "--concurrency", "8", env=env) for _ in range(2)]
    half = env_int("PGSCHED_CHAOS_POISON_INNOCENTS", 600) // 2
    innocents = enqueue(db, half, seconds=0.2)
    (pill,) = enqueue(db, 1, task="poison", age=1.0)  # at the head of the line, among innocents
    innocents += enqueue(db, half, seconds=0.2)
    restarts = 0

    def settled() -> bool:
        nonlocal restarts
        for k, proc in enumerate(workers):
            if proc.poll() is not None:  # the supervisor: restart what died
                workers[k] = cluster.worker("--no-scheduler", "--concurrency", "8", env=env)
                restarts += 1
        row = db.execute(
            "SELECT count(*) FILTER (WHERE state IN ('queued', 'running')) AS open FROM pgsched.jobs"
        ).fetchone()
        return row is not None and row["open"] == 0

    wait_until(settled, timeout=120 + len(innocents) * 0.2 / 4, interval=0.1, message="the queue did not settle")
    final = jobs(db, innocents)
    dead = [i for i, r in final.items() if r["state"] != "succeeded"]
    pill_row = jobs(db, [pill])[pill]
    charged = sum(1 for r in final.values() if losses(r))
    emit("poison_pill", restarts=restarts, pill=pill_row["state"], innocents_dead=len(dead), innocents_charged=charged)
    assert pill_row["state"] == "dead" and losses(pill_row) == 3
    assert dead == [], "an innocent job went dead beside the poison pill"


def test_a_worker_resumed_after_its_row_was_deleted_claims_nothing_under_its_old_id(cluster: Cluster, db: Conn) -> None:
    cluster.env["PGSCHED_LEASE_SECONDS"] = "3"
    paused = cluster.worker("--no-scheduler", "--concurrency", "1")
    wait_until(lambda: live_workers(db) == 1, timeout=60, message="worker did not register")
    (old_id,) = [r["id"] for r in db.execute("SELECT id FROM pgsched.workers WHERE pid = %s", [paused.pid])]
    ids = enqueue(db, 1, seconds=5.0)
    wait_until(lambda: ran(db, ids, paused.pid), timeout=30, message="the job did not start")
    ids += enqueue(db, 200, seconds=0.05)
    os.kill(paused.pid, signal.SIGSTOP)
    cluster.scheduler()
    wait_until(
        lambda: scalar(db, "SELECT count(*) AS v FROM pgsched.workers WHERE id = %s", [old_id]) == 0,
        timeout=30,
        message="the paused worker's row was not removed",
    )
    os.kill(paused.pid, signal.SIGCONT)
    wait_until(lambda: live_workers(db) == 2, timeout=60, message="the resumed worker did not register again")
    wait_until(
        lambda: (
            scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE id = ANY(%s) AND state <> 'succeeded'", [ids]) == 0
        ),
        timeout=60,
        message="the jobs did not all run",
    )
    lost_to_old = [r for r in jobs(db, ids).values() if any(e.get("worker_id") == old_id for e in r["errors"])]
    emit("resumed_worker", charged_to_old_id=len(lost_to_old))
    assert len(lost_to_old) == 1 and losses(lost_to_old[0]) == 1, "only the job it had started is charged"
    assert paused.poll() is None
