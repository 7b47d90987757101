"""PGSCHED_READ_DSN against a real streaming replica (initdb + pg_basebackup on a private port pair): lists
read from the replica, ``GET /jobs/{id}`` from the primary, and the API keeps answering when the replica is
down (from the primary)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pgsched import Settings
from pgsched.metrics import API_REPLICA_FALLBACKS
from pgsched.migrate import Migrator
from tests.acceptance.replication import ReplicatedPair, pg_bindir, replicated_pair
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(pg_bindir() is None, reason="no PostgreSQL server binaries to build a replica")

PORTS = "24440-24459"  # this suite's private range, below the ephemeral ports


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplicatedPair]:
    monkeypatch.setenv("PGSCHED_FAILOVER_PORTS", PORTS)
    with replicated_pair(sync=False) as replicated:
        Migrator(replicated.primary.dsn).migrate()
        yield replicated


def _listed(client: httpx.Client, job_id: int) -> bool:
    page = client.get("/jobs", params={"queue": "replica", "limit": 100})
    assert page.status_code == 200, page.text
    return job_id in {j["id"] for j in page.json()["items"]}


def _create(client: httpx.Client) -> int:
    created = client.post("/jobs", json={"task": "noop", "queue": "replica"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _replay(pair: ReplicatedPair, action: str) -> Any:
    return pair.standby.one(f"SELECT pg_wal_replay_{action}()")  # a fixed name: pause or resume


def test_lists_read_the_replica_while_get_by_id_reads_the_primary_and_a_down_replica_falls_back(
    pair: ReplicatedPair,
) -> None:
    settings = Settings(dsn=pair.primary.dsn, read_dsn=pair.standby.dsn, api_token=ADMIN_TOKEN)
    with serve_api(settings) as api, api.client() as client:
        first = _create(client)
        wait_until(lambda: _listed(client, first), timeout=20, message="the replica never showed the job")

        _replay(pair, "pause")
        paused = "SELECT pg_get_wal_replay_pause_state() = 'paused'"
        wait_until(lambda: pair.standby.one(paused), timeout=20, message="replay did not pause")
        second = _create(client)
        fresh = client.get(f"/jobs/{second}")
        assert fresh.status_code == 200 and fresh.json()["id"] == second  # read after write: the primary
        assert not _listed(client, second)  # the list comes from the paused replica: stale
        assert _listed(client, first)
        queues = client.get("/queues").json()["items"]
        assert {q["queue"]: q["due"] for q in queues}.get("replica") == 1  # the replica's count, too

        _replay(pair, "resume")
        wait_until(lambda: _listed(client, second), timeout=20, message="the replica did not catch up")

        assert _doctor(pair)["status"] == "ok" and "is a standby" in _doctor(pair)["detail"]
        before = API_REPLICA_FALLBACKS._value.get()
        pair.standby.stop()
        third = _create(client)
        assert _listed(client, third)  # answered by the primary
        assert client.get("/queues").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert API_REPLICA_FALLBACKS._value.get() > before
        assert _doctor(pair)["status"] == "warn"


def _doctor(pair: ReplicatedPair) -> dict[str, str]:
    env = {**os.environ, "PGSCHED_DSN": pair.primary.dsn, "PGSCHED_READ_DSN": pair.standby.dsn}
    out = subprocess.run([sys.executable, "-m", "pgsched", "doctor", "--json"], env=env, capture_output=True, text=True)
    checks: dict[str, dict[str, str]] = {c["name"]: c for c in json.loads(out.stdout)}
    return checks["read dsn"]
