"""Scenario: the primary dies (``stop -m immediate``) and its streaming standby is promoted, under load.

A private primary and standby (``tests.acceptance.replication``), never the shared server. Every
process is given the multi-host DSN ``host=...,... port=P1,P2 target_session_attrs=read-write``:
two workers, two leader candidates, the API, a per-second cron on the transactional ``tick`` task,
and enqueuer threads (the Python client, and ``POST /jobs``) logging acknowledged ids to a file
(outside PostgreSQL). The primary is killed,
the standby promoted, and nobody is restarted. Counted on the new primary:

- acknowledged jobs lost: 0 with synchronous replication (``synchronous_standby_names``, commits
  on); with asynchronous replication the count is reported (the replication lag at the kill);
- cron instants fired twice (two jobs for one instant in the external record: 0 with synchronous
  replication; asynchronous replication may lose a fire whose job already ran, which the new leader
  fires again) and instants whose transactional effect committed twice (0);
- the timeline: kill -> promoted -> first enqueue (client, API), first claim, first cron fire on the
  new primary;
- processes that died (needed a restart): 0.

A third variant, ``async-lagging``, stalls the primary's WAL sender (SIGSTOP) until 100 more jobs are
acknowledged, then kills the primary: those jobs are lost (asserted), the asynchronous window made
visible.

Then the old primary comes back. Fenced (restarted as a standby, read-only), it is never written:
a new worker and new enqueues land on the new primary while its WAL position and job count stay as
they were. Unfenced (restarted as it was, writable), libpq picks it for a new connection because it
is first in the list: pgsched cannot fence it itself, which is why the README requires fencing.
Runs only in ``bin/chaos`` (over a minute per variant): PGSCHED_CHAOS_FAILOVER=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgsched.migrate import Migrator
from tests.acceptance.conftest import live_workers, running_cluster, scalar
from tests.acceptance.enqueuers import ApiEnqueuers, Enqueuers, read_acks
from tests.acceptance.ledger import emit
from tests.acceptance.replication import ReplicatedPair, pg_bindir, replicated_pair
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(not os.environ.get("PGSCHED_CHAOS_FAILOVER"), reason="over a minute: runs in bin/chaos"),
    pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL server binaries (initdb, pg_basebackup)"),
]

WORKERS, SCHEDULERS, CONCURRENCY = 2, 2, 4
JOB_SECONDS = 0.05
API_TOKEN = "failover-chaos-token"
STALLED_ACKS = 100  # async-lagging: jobs acknowledged while the standby receives nothing
AFTER_SECONDS = float(os.environ.get("PGSCHED_CHAOS_FAILOVER_SECONDS") or 10)  # load kept on the new primary

_LOST = """
SELECT count(*) FILTER (WHERE j.id IS NULL) AS missing, count(*) FILTER (WHERE j.state <> 'succeeded') AS unfinished
  FROM unnest(%s::bigint[]) AS a(id) LEFT JOIN pgsched.jobs j ON j.id = a.id
"""
_FIRST_AFTER = """
SELECT extract(epoch FROM min(created_at) FILTER (WHERE schedule_name IS NULL AND created_at > after
                                                     AND NOT coalesce('api' = ANY(tags), false)))::float8 AS enqueue,
       extract(epoch FROM min(created_at) FILTER (WHERE 'api' = ANY(tags) AND created_at > after))::float8 AS api,
       extract(epoch FROM min(started_at) FILTER (WHERE started_at > after))::float8 AS claim,
       extract(epoch FROM min(created_at) FILTER (WHERE schedule_name = 'tick' AND created_at > after))::float8 AS cron
  FROM pgsched.jobs, to_timestamp(%(t)s) AS after
 WHERE created_at > after OR started_at > after
"""
_STUCK_SAMPLE = """
SELECT j.id, j.task, j.attempt, j.worker_id, j.lease, j.started_at, j.schedule_name,
       w.pid AS worker_pid, w.heartbeat_at, w.started AS worker_started, now() AS at
  FROM pgsched.jobs j LEFT JOIN pgsched.workers w ON w.id = j.worker_id
 WHERE j.state = 'running' ORDER BY j.id LIMIT 5
"""
_LAG = "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)), 0)::bigint AS v FROM pg_stat_replication"
_CRON_TX_TWICE = """
SELECT count(*) AS v FROM (SELECT j.run_key FROM ledger l JOIN pgsched.jobs j ON j.id = l.job_id
                       WHERE l.kind = 'tick' GROUP BY j.run_key HAVING count(*) > 1) t
"""


@pytest.mark.parametrize("mode", ["sync", "async", "async-lagging"])
def test_promoting_the_standby_after_the_primary_dies_loses_no_acknowledged_job_and_restarts_no_process(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    acks, runs_file = tmp_path / "acks.txt", tmp_path / "runs.jsonl"
    acks.touch()
    with replicated_pair(sync=mode == "sync") as pair:
        Migrator(pair.dsn).migrate()
        with running_cluster(pair.dsn, tmp_path / "logs", request) as cluster:
            cluster.env["PGSCHED_CHAOS_RUNS_FILE"] = str(runs_file)
            with pair.primary.connect() as db:
                db.execute("INSERT INTO pgsched.schedules (name, cron, task) VALUES ('tick', '* * * * * *', 'tick')")
                for _ in range(WORKERS):
                    cluster.worker("--no-scheduler", "--concurrency", str(CONCURRENCY))
                for _ in range(SCHEDULERS):
                    cluster.scheduler()
                api = _api(cluster)
                wait_until(lambda: live_workers(db) == WORKERS + SCHEDULERS, timeout=60, message="no registration")
            args = {"seconds": JOB_SECONDS}
            enqueuers = [
                *(Enqueuers(pair.dsn, 2, task=task, args=args, pause=0.01, acks=acks) for task in ("plain", "tx")),
                ApiEnqueuers(api, API_TOKEN, 1, task="plain", args=args, pause=0.01, acks=acks),
            ]
            try:
                _wait_for_flow(pair, cron_jobs=3, succeeded=300)
                if mode == "async-lagging":
                    _stall_sender(pair, acks)
                lag = pair.primary.one(_LAG)
                killed = time.time()
                pair.primary.kill()
                stopped = time.time()  # the old postmaster is gone: anything written later is on the new primary
                pair.standby.promote()
                promoted = time.time()
                first = wait_until(lambda: _first_after(pair, stopped), timeout=120, interval=0.05, message="no work")
                _keep_load(pair, AFTER_SECONDS)
                fenced = _old_primary_fenced_gets_no_writes(pair, cluster)
            finally:
                for e in enqueuers:
                    e.stop()
            acked = read_acks(acks)
            with pair.standby.connect() as db:
                settled = _settle(db, acked, timeout=180)
                missing = int(db.execute(_LOST, [acked]).fetchone()["missing"])  # type: ignore[index]
                stuck_sample = db.execute(_STUCK_SAMPLE).fetchall()  # cron keeps firing: some run right now
                stuck = _still_running(db, timeout=30)  # what a whole lease plus reaper passes did not end
                cron_tx_twice = scalar(db, _CRON_TX_TWICE)
                instants = scalar(db, "SELECT count(*) AS v FROM pgsched.jobs WHERE schedule_name = 'tick'")
                registered = live_workers(db)
            alive = len(cluster.alive())
            spawned = len(cluster.procs)  # the API's among them: it keeps no registry row
            fired_twice, cron_ran_twice = _cron_twice(runs_file)
        unfenced_chosen = _unfenced_old_primary_is_chosen(pair)
    timeline = {  # seconds from the moment the old postmaster was gone (pg_ctl stop -m immediate returned)
        "kill_took_s": round(stopped - killed, 3),
        "promoted_s": round(promoted - stopped, 3),
        **{f"first_{k}_s": round(v - stopped, 3) for k, v in first.items()},
    }
    emit(
        f"failover_{mode}",
        acknowledged=len(acked),
        acknowledged_lost=missing,
        replication_lag_bytes_at_kill=lag,
        settled=settled,
        stuck_running=stuck,
        enqueue_failures=sum(e.failures for e in enqueuers),
        cron_instants=instants,
        cron_instants_fired_twice=fired_twice,
        cron_instants_committed_twice=cron_tx_twice,
        cron_instants_ran_twice=cron_ran_twice,
        timeline=timeline,
        processes=spawned,
        processes_died=spawned - alive,
        registered_on_new_primary=registered,  # every process but the API
        old_primary_fenced=fenced,
        stuck_sample=stuck_sample,
        unfenced_old_primary_chosen_by_libpq=unfenced_chosen,
    )
    assert [repr(s) for e in enqueuers for s in e.surprises] == []
    if mode == "async-lagging":  # the window made visible: jobs acknowledged while the standby received nothing
        assert missing > 0, "jobs acknowledged while the standby lagged survived an asynchronous failover"
    if mode == "sync":  # asynchronous: what the standby had not received at the kill is gone (reported)
        assert missing == 0, "an acknowledged job was lost with synchronous replication"
        assert fired_twice == 0, "a cron instant fired twice across the failover"
    assert settled and stuck == 0, "acknowledged jobs did not all run on the new primary"
    assert cron_tx_twice == 0, "a cron instant's transactional effect committed twice"
    assert alive == spawned, "a pgsched process died with the primary"
    assert registered == spawned - 1, "a process did not re-register on the new primary"
    assert fenced["old_lsn_moved"] is False and fenced["old_jobs_added"] == 0, "the fenced old primary was written"
    assert unfenced_chosen, "libpq no longer picks a writable first host: revisit the fencing requirement"


def _api(cluster: Any) -> str:
    """A ``pgsched api`` on the multi-host DSN; its URL once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster.api(port, env={"PGSCHED_API_TOKEN": API_TOKEN})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), timeout=60, interval=0.1, message="the API did not start")
    return url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stall_sender(pair: ReplicatedPair, acks: Path) -> None:
    """SIGSTOP the primary's WAL sender until ``STALLED_ACKS`` more jobs are acknowledged: the asynchronous
    primary goes on committing what its standby never receives. (Stopping the standby's receiver instead
    does not stall it: the kernel's socket buffer takes the WAL meanwhile.) The sender stays stopped; the
    immediate shutdown SIGKILLs it after its 5 s grace."""
    pid = int(pair.primary.one("SELECT pid AS v FROM pg_stat_replication"))
    before = len(read_acks(acks))
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: len(read_acks(acks)) >= before + STALLED_ACKS, timeout=60, message="no acks while stalled")


def _counts(node: Any) -> tuple[int, int]:
    row = node.one(
        "SELECT json_build_array((SELECT count(*) FROM pgsched.jobs WHERE state = 'succeeded'),"
        " (SELECT count(*) FROM pgsched.jobs WHERE schedule_name = 'tick')) AS v"
    )
    return int(row[0]), int(row[1])


def _wait_for_flow(pair: ReplicatedPair, *, cron_jobs: int, succeeded: int) -> None:
    wait_until(
        lambda: (c := _counts(pair.primary))[0] >= succeeded and c[1] >= cron_jobs,
        timeout=120,
        interval=0.2,
        message="jobs and cron did not flow on the primary",
    )


def _first_after(pair: ReplicatedPair, stopped: float) -> dict[str, float] | None:
    """Wall-clock instants of the first enqueue, claim and cron fire written after the old primary was gone
    (so on the new primary), once all three exist."""
    try:
        with pair.standby.connect() as conn:
            row = conn.execute(_FIRST_AFTER, {"t": stopped}).fetchone()
    except psycopg.OperationalError:
        return None
    if row is None or any(v is None for v in row.values()):
        return None
    return {k: float(v) for k, v in row.items()}


def _keep_load(pair: ReplicatedPair, seconds: float) -> None:
    """Load runs on for ``seconds`` of new-primary work: jobs keep succeeding there (polled, not slept)."""
    began = _counts(pair.standby)
    deadline = time.monotonic() + seconds
    wait_until(
        lambda: time.monotonic() >= deadline and _counts(pair.standby)[0] > began[0] + 100,
        timeout=seconds + 120,
        interval=0.2,
        message="jobs stopped succeeding on the new primary",
    )


def _old_primary_fenced_gets_no_writes(pair: ReplicatedPair, cluster: Any) -> dict[str, Any]:
    """The old primary rejoins read-only (standby.signal, nothing to follow): one more worker and the running
    enqueuers connect with the DSN that lists it first; none of them writes there."""
    (pair.primary.data / "standby.signal").touch()
    pair.primary.start()
    lsn_sql = "SELECT pg_last_wal_replay_lsn()::text AS v"
    lsn, jobs = pair.primary.one(lsn_sql), pair.primary.one("SELECT count(*) AS v FROM pgsched.jobs")
    with pair.standby.connect() as db:
        before = live_workers(db)
        cluster.worker("--no-scheduler", "--concurrency", "2")
        wait_until(lambda: live_workers(db) == before + 1, timeout=60, message="the new worker")
    _keep_load(pair, 3)
    sessions = pair.primary.one(
        "SELECT count(*) AS v FROM pg_stat_activity WHERE application_name LIKE 'pgsched:%%' AND state IS NOT NULL"
    )
    return {
        "old_in_recovery": pair.primary.one("SELECT pg_is_in_recovery() AS v"),
        "old_lsn_moved": pair.primary.one(lsn_sql) != lsn,
        "old_jobs_added": pair.primary.one("SELECT count(*) AS v FROM pgsched.jobs") - jobs,
        "pgsched_sessions_on_old": sessions,
    }


def _unfenced_old_primary_is_chosen(pair: ReplicatedPair) -> bool:
    """Restarted writable (no standby.signal), the old primary is first in the list and read-write: libpq
    connects there. Only fencing (or rejoining as a standby) keeps writes away from it."""
    pair.primary.stop()
    (pair.primary.data / "standby.signal").unlink()
    pair.primary.start()
    with psycopg.connect(pair.dsn, connect_timeout=5) as conn:
        return conn.info.port == pair.primary.port


def _still_running(db: Any, timeout: float) -> int:
    """Jobs of the acknowledged era still ``running`` after ``timeout`` seconds (the cron's own jobs come and go)."""
    sql = "SELECT count(*) AS v FROM pgsched.jobs WHERE state = 'running' AND schedule_name IS NULL"
    with contextlib.suppress(AssertionError):
        wait_until(lambda: scalar(db, sql) == 0, timeout=timeout, interval=0.5)
    return int(scalar(db, sql))


def _settle(db: Any, ids: list[int], timeout: float) -> bool:
    """Every acknowledged job that exists on the new primary has succeeded (the lost ones are counted apart)."""
    try:
        wait_until(lambda: db.execute(_LOST, [ids]).fetchone()["unfinished"] == 0, timeout=timeout, interval=0.5)
    except AssertionError:
        return False
    return True


def _cron_twice(runs_file: Path) -> tuple[int, int]:
    """From the record outside PostgreSQL: cron instants run under two job ids (fired twice), and instants
    run to the end more than once (at-least-once execution: a completion lost with the primary)."""
    ids: dict[str, set[int]] = {}
    ends: dict[str, int] = {}
    for line in runs_file.read_text().splitlines() if runs_file.exists() else []:
        run = json.loads(line)
        if run.get("key"):
            ids.setdefault(run["key"], set()).add(run["job"])
            ends[run["key"]] = ends.get(run["key"], 0) + (run["event"] == "end")
    return sum(len(v) > 1 for v in ids.values()), sum(n > 1 for n in ends.values())
