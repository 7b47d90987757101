"""Scenario 4: PostgreSQL restarted (``-m fast``) and crashed (``stop -m immediate``) mid-run.

Runs on a throwaway embedded server in tmp_path, never the machine's shared one. Enqueuers keep
enqueuing through both outages (retrying what fails); afterwards every acknowledged enqueue
exists and ran exactly once, every pgsched process reconnected by itself (none restarted),
and no cron instant fired or ran twice.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import Pgsched, Settings, db
from pgsched.embedded import EmbeddedPostgres
from pgsched.maintenance import Reaper
from tests.acceptance.conftest import Cluster, Server, connect, live_workers, running_cluster, scalar
from tests.acceptance.enqueuers import Enqueuers
from tests.acceptance.ledger import emit, executions, unexpected_sample
from tests.support.waiting import await_until, wait_until

pytestmark = pytest.mark.acceptance

RUN_SECONDS = 3.0  # of enqueueing between outages


def test_restarting_and_crashing_postgres_mid_run_loses_no_acknowledged_job_and_everyone_reconnects(
    embedded: tuple[EmbeddedPostgres, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server, dsn = Server(embedded[0], embedded[1]), embedded[1]
    with running_cluster(dsn, tmp_path / "logs", request) as cluster, connect(dsn) as db:
        db.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('tick', '* * * * * *', 'tx')")
        procs = _start(cluster, db)
        enqueuers = Enqueuers(dsn, 2)
        try:
            _grow(enqueuers, RUN_SECONDS)
            server.restart_fast()
            _grow(enqueuers, RUN_SECONDS)
            server.crash_and_start()
            _grow(enqueuers, RUN_SECONDS)
        finally:
            enqueuers.stop()
        _check(cluster, procs, enqueuers, dsn)


def _start(cluster: Cluster, db: psycopg.Connection[Any]) -> list[subprocess.Popen[bytes]]:
    procs = [cluster.worker("--concurrency", "4"), cluster.worker("--concurrency", "4"), cluster.scheduler()]
    wait_until(lambda: live_workers(db) == 3, timeout=60, message="processes did not register")
    return procs


def _grow(enqueuers: Enqueuers, seconds: float) -> None:
    """Enqueueing resumed (waits for it) and then ran ``seconds`` more."""
    before = len(enqueuers.acked)
    wait_until(lambda: len(enqueuers.acked) > before + 5, timeout=60, message="enqueues did not resume")
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, timeout=seconds + 1, interval=0.1)


def _check(cluster: Cluster, procs: list[subprocess.Popen[bytes]], enqueuers: Enqueuers, dsn: str) -> None:
    with connect(dsn) as db:
        wait_until(lambda: live_workers(db) == 3, timeout=60, message="processes did not reconnect")
        fired = scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE schedule_name = 'tick'")
        wait_until(
            lambda: scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE schedule_name = 'tick'") >= fired + 2,
            timeout=30,
            message="cron did not resume",
        )
        acked = list(enqueuers.acked)
        wait_until(
            lambda: (
                scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE id = ANY(%s) AND state = 'succeeded'", [acked])
                == len(acked)
            ),
            timeout=120,
            interval=0.2,
            message="acknowledged jobs did not all run",
        )
        cron = db.execute("SELECT id, run_at FROM pgsched.jobs WHERE schedule_name = 'tick'").fetchall()
        wait_until(
            lambda: (
                scalar(
                    db,
                    "SELECT count(*) AS v FROM pgsched.jobs WHERE schedule_name = 'tick' AND state <> 'succeeded' "
                    "AND id = ANY(%s)",
                    [[r["id"] for r in cron]],
                )
                == 0
            ),
            timeout=60,
            message="cron jobs did not all run",
        )
        missing = scalar(
            db,
            "SELECT count(*) AS v FROM unnest(%s::bigint[]) i WHERE NOT EXISTS "
            "(SELECT 1 FROM pgsched.jobs j WHERE j.id = i)",
            [acked],
        )
        counts = executions(db, acked, [])
        cron_counts = executions(db, [r["id"] for r in cron], [])
        instants = [r["run_at"] for r in cron]
        emit(
            "postgres_restart",
            acknowledged=len(acked),
            enqueue_failures=enqueuers.failures,
            missing=missing,
            **counts,
            cron_instants=len(instants),
            duplicate_instants=len(instants) - len(set(instants)),
            cron_duplicated=cron_counts["duplicated"],
            cron_lost=cron_counts["lost"],
            processes_alive=sum(p.poll() is None for p in procs),
            processes_restarted=0,
            surprises=[repr(e) for e in enqueuers.surprises][:3],
        )
        sample = unexpected_sample(db, acked) if counts["unexpected"] else []
    assert enqueuers.surprises == [], "enqueue raised something other than DatabaseUnavailable"
    assert missing == 0 and counts["lost"] == 0
    assert counts["duplicated"] == 0 and counts["unexpected"] == 0, sample
    assert len(instants) == len(set(instants)) and cron_counts["duplicated"] == 0 and cron_counts["lost"] == 0
    assert all(p.poll() is None for p in procs), "a pgsched process died with the database"


async def test_an_enqueue_just_after_a_restart_gets_a_live_connection_however_recently_the_dead_one_was_used(
    embedded: tuple[EmbeddedPostgres, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool skips its ping for a connection used within IDLE_CHECK_SECONDS; set so long here that the ping
    never runs by age, whatever the restart takes: only the look at the socket can see the server went away."""
    server, dsn = Server(embedded[0], embedded[1]), embedded[1]
    monkeypatch.setattr(db, "IDLE_CHECK_SECONDS", 3600.0)
    app = Pgsched(settings=Settings(dsn=dsn))
    try:
        app.enqueue("tx", {})
        await app.enqueue_async("tx", {})
        server.crash_and_start()
        assert app.enqueue("tx", {}) > 0
        assert await app.enqueue_async("tx", {}) > 0
        server.restart_fast()
        assert app.enqueue("tx", {}) > 0
        assert await app.enqueue_async("tx", {}) > 0
    finally:
        await app.aclose()


async def test_right_after_a_restart_the_reaper_gives_workers_and_job_promises_their_grace_then_reaps(
    embedded: tuple[EmbeddedPostgres, str],
) -> None:
    """Every worker's lock is free until it reconnects, and a job's own lease may have lapsed in the outage
    (or its extension was a commit the crash lost): none of that is a death until a grace after the restart, and a
    free lock none until a lease after it (0047: a worker reconnecting on a busy machine may take longer than the
    grace). A worker that does not come back is taken for dead once the lease has passed."""
    server, dsn = Server(embedded[0], embedded[1]), embedded[1]
    # Counted from this leader session's start when it opened within a lease (15 s) of the server's start. Under CI
    # load, crash recovery and the waits below took longer than the 5 s lease this test once gave, so the reaper
    # rightly counted from the server's start and the lease had passed. The grace (two heartbeats, 2 s) alone no
    # longer reaps a worker with a free lock right after a restart.
    settings = Settings(dsn=dsn, heartbeat_seconds=1.0, lease_seconds=15.0)
    with connect(dsn) as db:
        worker = scalar(db, "INSERT INTO pgsched.workers (host, pid) VALUES ('gone', 1) RETURNING id AS v")
        plain, promised = (
            scalar(
                db,
                "INSERT INTO pgsched.jobs (task, state, attempt, worker_id, lease, extended_lease, extended_until)"
                " VALUES ('t', 'running', 1, %s, 7, %s, now() + interval '0.2 s') RETURNING id AS v",
                [worker, extension],
            )
            for extension in (None, 7)
        )
    server.crash_and_start()
    with connect(dsn) as db:
        wait_until(lambda: scalar(db, "SELECT bool_and(extended_until < now()) AS v FROM pgsched.jobs"))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        assert await Reaper(settings).reap(leader) == {}, "a worker still reconnecting was taken for dead"
        reaped: dict[int, Any] = {}

        async def taken(n: int) -> bool:
            reaped.update(await Reaper(settings).reap(leader))
            return len(reaped) >= n

        # The lapsed promise goes a grace after the restart; the worker's free lock does not count yet.
        await await_until(lambda: taken(1), timeout=30, interval=0.2, message="the lapsed promise stayed")
        assert set(reaped) == {promised}, "a free lock counted before a lease had passed since the restart"
        await await_until(lambda: taken(2), timeout=60, interval=0.2, message="nobody came back, yet the job stayed")
    assert set(reaped) == {plain, promised}
