"""Progress reports and per-job heartbeats from a task, in a real worker process, with the leader's reaper running.

The issue's case is a 60 s job beating under a 10 s lease; here it is scaled down to a 12 s job under
the tests' 3 s lease (the same ratio of several leases, the same mechanism), to keep the suite short.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched import Settings
from pgsched.maintenance import Reaper
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.worker.conftest import ROOT, enqueue

APP = "tests.worker.control_app:app"
Conn = psycopg.Connection[Any]


@pytest.fixture
def worker(spawn_worker: Any) -> Any:
    return spawn_worker("--app", APP, "--concurrency", "4")


@pytest.fixture
async def reaper(settings: Settings) -> AsyncIterator[list[int]]:
    """The leader's reaper pass every 0.3 s (as a leader runs it); yields the ids it has taken back."""
    taken: list[int] = []

    async def loop() -> None:
        async with await psycopg.AsyncConnection.connect(settings.require_dsn(), autocommit=True) as conn:
            while True:
                taken.extend(await Reaper(settings).reap(conn))
                await asyncio.sleep(0.3)

    task = asyncio.create_task(loop())
    yield taken
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    found = conn.execute("SELECT * FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert found is not None
    return dict(found)


async def wait_state(conn: Conn, job_id: int, state: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = row(conn, job_id)
        if found["state"] == state:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} not {state} within {timeout}s: {row(conn, job_id)}")


async def wait_for(conn: Conn, job_id: int, condition: str, timeout: float) -> None:
    """Poll until the job's row meets a SQL condition (test-written text, never input)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = conn.execute(f"SELECT {condition} AS ok FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
        if found is not None and found["ok"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id}: not ({condition}) within {timeout}s: {row(conn, job_id)}")


async def test_a_job_beating_its_own_lease_runs_four_leases_long_and_is_never_rescued(
    worker: Any, reaper: list[int], settings: Settings, conn: Conn
) -> None:
    assert settings.lease_seconds == 3.0  # the worker process runs with the same lease
    job_id = enqueue(settings, "long_beating", max_attempts=2, seconds=12, every=1)
    running = await wait_state(conn, job_id, "running", 15)
    # Past one lease by the database's clock, with the promise on the row under this attempt's lease.
    await wait_for(conn, job_id, "now() - started_at > interval '4 seconds' AND extended_lease = lease", 15)
    mid = row(conn, job_id)
    assert mid["state"] == "running" and mid["extended_lease"] == mid["lease"] == running["lease"]
    done = await wait_state(conn, job_id, "succeeded", 30)
    assert (done["finished_at"] - done["started_at"]).total_seconds() >= 12
    assert done["attempt"] == 1 and done["errors"] == [] and done["result"] == "finished"
    assert job_id not in reaper


async def test_a_job_that_stops_beating_is_rescued_while_its_worker_lives(
    worker: Any, reaper: list[int], settings: Settings, conn: Conn, tmp_path: Path
) -> None:
    job_id = enqueue(settings, "beats_then_hangs", max_attempts=2, directory=str(tmp_path), hang=8)
    done = await wait_state(conn, job_id, "succeeded", 30)
    assert job_id in reaper and worker.poll() is None
    assert done["result"] == "second run" and done["attempt"] == 2
    (entry,) = done["errors"]
    assert entry["kind"] == "lease_expired" and "its own lease ran out" in entry["error"]


async def test_a_stale_worker_heartbeat_does_not_take_a_job_whose_own_lease_holds(
    worker: Any, settings: Settings, conn: Conn
) -> None:
    job_id = enqueue(settings, "long_beating", max_attempts=2, seconds=4, every=0.5)
    running = await wait_state(conn, job_id, "running", 15)
    await wait_for(conn, job_id, "extended_lease = lease", 15)  # its own beats are on the row
    # The worker looks hung (heartbeat a minute old, lock still held): its beating job stays.
    conn.execute(
        "UPDATE pgsched.workers SET heartbeat_at = now() - interval '1 minute' WHERE id = %s", [running["worker_id"]]
    )
    async with await psycopg.AsyncConnection.connect(settings.require_dsn(), autocommit=True) as reaping:
        assert job_id not in await Reaper(settings).reap(reaping)
    assert row(conn, job_id)["state"] == "running"


async def test_progress_shows_in_the_job_row_the_rest_api_and_jobs_show(
    worker: Any, settings: Settings, conn: Conn
) -> None:
    job_id = enqueue(settings, "report_progress", max_attempts=2, steps=4, pause=0.7)
    seen: set[float] = set()
    deadline = time.monotonic() + 20
    while row(conn, job_id)["state"] != "succeeded" and time.monotonic() < deadline:
        if (fraction := row(conn, job_id)["progress"]) is not None:
            seen.add(round(fraction, 2))
        await asyncio.sleep(0.05)
    assert len(seen) >= 2 and seen <= {0.25, 0.5, 0.75, 1.0}  # written as it ran, at most once a second
    with serve_api(settings.with_(api_token=ADMIN_TOKEN)) as api, api.client() as http:
        body = http.get(f"/jobs/{job_id}").json()
    assert (body["progress"], body["progress_message"]) == (1.0, "step 4 of 4") and body["progress_at"]
    shown = subprocess.run(
        [sys.executable, "-m", "pgsched", "--dsn", settings.require_dsn(), "jobs", "show", str(job_id)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "progress_message: step 4 of 4" in shown
