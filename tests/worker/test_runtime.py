"""The in-process worker against a real PostgreSQL: results, retries, timeouts, cancels, liveness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb

from pgsched import ConfigurationError, Settings
from pgsched.config import DEFAULT_RESULT_MAX_BYTES
from pgsched.hooks import Hooks
from pgsched.worker_store import WorkerStore
from tests.support.factories import insert_jobs
from tests.support.waiting import await_until
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def finished(conn: Conn, job_id: int, state: str = "succeeded") -> bool:
    return job(conn, job_id)["state"] == state


async def test_a_job_runs_and_its_return_value_is_stored_as_result(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    (job_id,) = insert_jobs(conn, 1, task="echo", args={"x": [1, "two"]})
    await until(lambda: finished(conn, job_id), timeout=10)
    row = job(conn, job_id)
    assert (row["result"], row["attempt"], row["errors"]) == ({"x": [1, "two"]}, 1, [])
    assert row["worker_id"] is not None and row["finished_at"] is not None


async def test_the_last_job_in_hand_is_written_at_once_not_after_the_flush_interval(
    start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker(flush_interval=60.0)  # nothing else in hand: waiting would only delay the job's end
    (job_id,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: finished(conn, job_id), timeout=10)


async def test_a_worker_that_runs_dry_between_jobs_writes_at_most_one_statement_per_flush_interval(
    start_worker: StartWorker, conn: Conn
) -> None:
    worker = await start_worker(flush_interval=60.0)
    (first,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: finished(conn, first), timeout=10)  # alone: written at once
    (second,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: worker.results_pending == 1, timeout=10)  # it ran; its end waits to be written
    assert job(conn, second)["state"] == "running"  # alone too, but a flush started within the interval
    worker.stop()  # a stop writes what is buffered, whatever the interval
    await until(lambda: finished(conn, second), timeout=10)


async def test_a_result_waits_for_the_flush_while_another_job_is_in_hand_then_both_go_together(
    start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker = await start_worker(concurrency=2, flush_interval=60.0)
    (slow,) = insert_jobs(conn, 1, task="gated", args={"gate": str(gate)})
    await until(lambda: job(conn, slow)["state"] == "running", timeout=10)
    (quick,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: worker.results_pending == 1, timeout=10)  # the quick one ran; its end waits to be written
    assert job(conn, quick)["state"] == "running"  # its result is buffered: the gated job may still share the write
    gate.touch()
    await until(lambda: finished(conn, slow) and finished(conn, quick), timeout=10)
    assert job(conn, quick)["finished_at"] <= job(conn, slow)["finished_at"]


async def test_sync_and_async_jobs_all_finish_with_many_slots(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker(concurrency=4)
    ids = insert_jobs(conn, 300, task="noop") + insert_jobs(conn, 8, task="sync_sleep", args={"seconds": 0.05})
    await until(
        lambda: (
            conn.execute(
                "SELECT count(*) AS n FROM pgsched.jobs WHERE state = 'succeeded' AND id = ANY(%s)", [ids]
            ).fetchone()
            == {"n": len(ids)}
        ),
        timeout=20,
    )


async def test_a_failing_job_backs_off_then_goes_dead_with_every_error(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    (job_id,) = insert_jobs(conn, 1, task="fail_always", args={"message": "nope"}, max_attempts=3)
    await until(lambda: finished(conn, job_id, "dead"), timeout=15)
    row = job(conn, job_id)
    assert row["attempt"] == 3
    assert [e["error"] for e in row["errors"]] == ["RuntimeError: nope"] * 3
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]
    assert all("Traceback" in e["traceback"] for e in row["errors"])
    gaps = [
        datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])
        for a, b in zip(row["errors"], row["errors"][1:], strict=False)
    ]
    assert all(gap >= timedelta(seconds=0.04) for gap in gaps), gaps  # FAST_RETRY: 0.05 s, then 0.1 s


async def test_a_job_of_a_task_this_worker_lacks_goes_back_uncharged_later_in_line(
    start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker(unserved_delay=60.0)
    (job_id,) = insert_jobs(conn, 1, task="nobody_knows_me", max_attempts=1)
    created = job(conn, job_id)["run_at"]
    await until(lambda: job(conn, job_id)["run_at"] > created, timeout=10)
    row = job(conn, job_id)
    assert (row["state"], row["attempt"], row["errors"], row["worker_id"]) == ("queued", 0, [], None)


async def test_a_result_that_is_not_json_fails_with_a_clear_error(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    (job_id,) = insert_jobs(conn, 1, task="not_json", max_attempts=1)
    await until(lambda: finished(conn, job_id, "dead"), timeout=10)
    assert "not JSON-serialisable" in job(conn, job_id)["errors"][0]["error"]


async def test_a_result_over_the_result_size_cap_fails_the_attempt_with_a_clear_error(
    start_worker: StartWorker, settings: Any, conn: Conn
) -> None:
    await start_worker(settings.with_(result_max_bytes=1000))
    (big,) = insert_jobs(conn, 1, task="echo", args={"blob": "x" * 2000}, max_attempts=1)
    (small,) = insert_jobs(conn, 1, task="echo", args={"blob": "x" * 900})
    await until(lambda: finished(conn, big, "dead") and finished(conn, small), timeout=10)
    error = job(conn, big)["errors"][0]["error"]
    assert "2,012 bytes of JSON, over the limit of 1,000 bytes (PGSCHED_RESULT_MAX_BYTES)" in error, error
    assert job(conn, big)["result"] is None
    assert job(conn, small)["result"] == {"blob": "x" * 900}


def test_the_result_size_cap_is_read_from_the_environment() -> None:
    assert Settings.from_env({"PGSCHED_RESULT_MAX_BYTES": "65536"}).result_max_bytes == 65536
    assert Settings.from_env({}).result_max_bytes == DEFAULT_RESULT_MAX_BYTES
    with pytest.raises(ConfigurationError, match="PGSCHED_RESULT_MAX_BYTES"):
        Settings.from_env({"PGSCHED_RESULT_MAX_BYTES": "0"})


async def test_a_job_over_its_timeout_is_stopped_and_records_a_timeout(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    (job_id,) = insert_jobs(
        conn, 1, task="sleepy", args={"seconds": 60}, timeout=timedelta(seconds=0.2), max_attempts=1
    )
    await until(lambda: finished(conn, job_id, "dead"), timeout=10)
    error = job(conn, job_id)["errors"][0]
    assert (error["kind"], error["error"]) == ("timeout", "timed out after 0.2s")


async def test_cancelling_a_running_job_reaches_the_task(start_worker: StartWorker, conn: Conn, tmp_path: Path) -> None:
    await start_worker()
    marker = tmp_path / "cancelled"
    (job_id,) = insert_jobs(conn, 1, task="wait_for_cancel", args={"marker": str(marker)})
    await until(lambda: job(conn, job_id)["state"] == "running", timeout=10)
    assert conn.execute("SELECT pgsched.cancel(%s)::text AS s", [job_id]).fetchone() == {"s": "running"}
    await until(lambda: finished(conn, job_id, "cancelled"), timeout=10)
    assert marker.read_text() == "cancelled"
    assert job(conn, job_id)["errors"][-1]["kind"] == "cancel"


async def test_a_delayed_job_starts_once_due_without_waiting_for_a_poll(
    start_worker: StartWorker, settings: Any, conn: Conn
) -> None:
    await start_worker(settings.with_(poll_seconds=60.0))
    run_at = datetime.now(UTC) + timedelta(seconds=0.5)
    (job_id,) = insert_jobs(conn, 1, task="noop", run_at=run_at)
    await until(lambda: finished(conn, job_id), timeout=10)
    assert job(conn, job_id)["started_at"] >= run_at


async def test_a_transactional_task_commits_its_write_with_the_success(start_worker: StartWorker, conn: Conn) -> None:
    conn.execute("CREATE TABLE tx_effects (value text)")
    await start_worker()
    (ok,) = insert_jobs(conn, 1, task="tx_insert", args={"value": "kept"})
    (bad,) = insert_jobs(conn, 1, task="tx_insert", args={"value": "rolled back", "fail": True}, max_attempts=1)
    await until(lambda: finished(conn, ok) and finished(conn, bad, "dead"), timeout=10)
    assert job(conn, ok)["result"] == "kept"
    assert job(conn, bad)["errors"][0]["error"] == "RuntimeError: rolled back on purpose"
    assert conn.execute("SELECT value FROM tx_effects").fetchall() == [{"value": "kept"}]


async def test_a_transactional_job_taken_back_meanwhile_rolls_its_write_back(
    start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    conn.execute("CREATE TABLE tx_effects (value text)")
    await start_worker()
    gate = tmp_path / "gate"
    (job_id,) = insert_jobs(conn, 1, task="tx_wait", args={"value": "v", "gate": str(gate)})
    await until(lambda: job(conn, job_id)["state"] == "running", timeout=10)
    # What the reaper does to a job it believes lost: back to queued, in the past, for another worker.
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'queued', lease = NULL, run_at = now() + interval '1 hour' WHERE id = %s",
        [job_id],
    )
    gate.touch()
    await until(lambda: conn.execute("SELECT count(*) AS n FROM pgsched.running").fetchone() == {"n": 0}, timeout=10)
    await await_until(_no_transaction_open(conn), timeout=10)
    row = job(conn, job_id)
    assert (row["state"], row["result"]) == ("queued", None)
    assert conn.execute("SELECT count(*) AS n FROM tx_effects").fetchone() == {"n": 0}


def _no_transaction_open(conn: Conn) -> Any:
    async def check() -> bool:
        row = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'pgsched:worker:%%' AND state LIKE 'idle in transaction%%'"
        ).fetchone()
        return row == {"n": 0}

    return check


async def test_a_worker_registers_holds_its_lock_beats_and_unregisters(start_worker: StartWorker, conn: Conn) -> None:
    worker = await start_worker(queues=("default", "mail"))
    row = conn.execute("SELECT * FROM pgsched.cluster WHERE id = %s", [worker.worker_id]).fetchone()
    assert row is not None
    assert (row["alive"], row["role"], row["queues"]) == (True, "worker", ["default", "mail"])
    first = row["heartbeat_at"]
    await until(
        lambda: (
            conn.execute("SELECT heartbeat_at FROM pgsched.workers WHERE id = %s", [worker.worker_id]).fetchone()[
                "heartbeat_at"
            ]
            > first
        ),
        timeout=10,
    )
    worker.stop()
    await until(lambda: conn.execute("SELECT count(*) AS n FROM pgsched.workers").fetchone() == {"n": 0}, timeout=15)


async def test_jobs_are_claimed_with_worker_id_and_attempt(
    start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    worker = await start_worker()
    (job_id,) = insert_jobs(conn, 1, task="wait_for_cancel", args={"marker": str(tmp_path / "m")})
    await until(lambda: job(conn, job_id)["state"] == "running", timeout=10)
    row = conn.execute("SELECT * FROM pgsched.running WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    assert (row["worker_id"], row["attempt"]) == (worker.worker_id, 1)
    conn.execute("SELECT pgsched.cancel(%s)", [job_id])
    await until(lambda: finished(conn, job_id, "cancelled"), timeout=10)


async def test_args_stored_as_jsonb_reach_the_function_as_keywords(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    row = conn.execute(
        "INSERT INTO pgsched.jobs (task, args) VALUES ('echo', %s) RETURNING id", [Jsonb({"a": {"b": None}})]
    ).fetchone()
    assert row is not None
    await until(lambda: finished(conn, row["id"]), timeout=10)
    assert job(conn, row["id"])["result"] == {"a": {"b": None}}


async def test_claims_stop_while_results_cannot_be_written(start_worker: StartWorker, conn: Conn, dsn: str) -> None:
    """Back-pressure: a stuck result write must not let the worker claim the whole backlog.

    A trigger makes every finishing UPDATE wait on an advisory lock this test holds; the worker
    may hold its slots, its prefetch and about two flushes of results, never the 2,000 jobs.
    """
    conn.execute(
        """
        CREATE FUNCTION public.gate_finishes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
        CREATE TRIGGER gate BEFORE UPDATE ON pgsched.jobs FOR EACH ROW
          WHEN (NEW.state = 'succeeded') EXECUTE FUNCTION public.gate_finishes();
        """
    )
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(4242)")
        await start_worker(concurrency=2, prefetch_max=10, flush_size=20)
        insert_jobs(conn, 2000, task="noop")

        def running() -> int:
            row = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE state = 'running'").fetchone()
            return 0 if row is None else int(row["n"])

        # The producer stops before its next claim until results are written: once it waits, nothing more is
        # claimed while the gate holds (it is the one task that claims).
        await until(lambda: REGISTRY.get_sample_value("pgsched_worker_claims_held") == 1, timeout=10)
        bound = 2 + 10 + 2 * 20 + (2 + 10)  # slots + prefetch + unwritten results + one claim in flight
        assert running() <= bound
        holder.execute("SELECT pg_advisory_unlock(4242)")
    await until(
        lambda: (
            conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE state = 'succeeded'").fetchone() == {"n": 2000}
        ),
        timeout=30,
    )


async def test_an_attempt_claimed_twice_after_a_lost_claim_commit_does_not_stop_the_worker(
    start_worker: StartWorker, conn: Conn
) -> None:
    """A database crash can lose a claim's commit (synchronous_commit off): the row is queued again
    with the same attempt while this worker still runs it, and the worker claims it a second time."""
    worker = await start_worker(concurrency=2)
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 1.0})
    await until(lambda: job(conn, job_id)["state"] == "running", timeout=10)
    conn.execute(  # what the crash leaves: the claim never happened
        "UPDATE pgsched.jobs SET state = 'queued', attempt = attempt - 1, worker_id = NULL, started_at = NULL"
        " WHERE id = %s",
        [job_id],
    )
    conn.execute("SELECT pg_notify('pgsched_jobs', 'default')")  # claim it again while the first copy runs
    await until(lambda: job(conn, job_id)["state"] == "running", timeout=5)
    await until(lambda: finished(conn, job_id), timeout=15)
    (later,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: finished(conn, later), timeout=10)  # the worker is still working
    assert worker.worker_id is not None
    assert job(conn, job_id)["attempt"] == 1


async def test_a_job_picked_up_from_idle_starts_before_the_producer_sends_its_next_statement(
    start_worker: StartWorker, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a claim the producer yields once, so the slots start the claimed jobs before it builds and sends its next
    statement (the waiting mark a NOTIFY took, or the next claim): that statement's client work is not in the way of
    a job's start."""
    events: list[str] = []
    claim, mark, started = WorkerStore.job_claim_batch, WorkerStore.worker_wait_mark, Hooks.started

    async def claiming(self: WorkerStore, *args: Any, **kwargs: Any) -> Any:
        events.append("claim")
        jobs = await claim(self, *args, **kwargs)
        events.extend(["claimed"] if jobs else [])
        return jobs

    async def marking(self: WorkerStore, *args: Any, **kwargs: Any) -> None:
        events.append("mark")
        await mark(self, *args, **kwargs)

    def starting(self: Hooks, job: Any) -> None:
        events.append("start")
        started(self, job)

    monkeypatch.setattr(WorkerStore, "job_claim_batch", claiming)
    monkeypatch.setattr(WorkerStore, "worker_wait_mark", marking)
    monkeypatch.setattr(Hooks, "started", starting)
    await start_worker(concurrency=2)
    await until(lambda: "mark" in events, timeout=10)  # idle, waiting on its queue
    (job_id,) = insert_jobs(conn, 1, task="noop")
    await until(lambda: finished(conn, job_id), timeout=10)
    picked = events.index("claimed")
    assert events[picked + 1] == "start", events[picked:]
