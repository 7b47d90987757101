"""Schemathesis against /openapi.json with every check and every phase (examples, coverage, fuzzing,
stateful), small example counts and a fixed seed: the server and its document agree, 0 failures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import (
    EngineFinished,
    FatalError,
    FuzzScenarioFinished,
    NonFatalError,
    ScenarioFinished,
)

from pgsched.config import Settings
from tests.api.conftest import ADMIN_TOKEN, LiveApi
from tests.support.processes import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 5
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' own default
SEED = 20261129


@pytest.fixture
def conformance_api(api_settings: Settings) -> Iterator[LiveApi]:
    """``pgsched api`` as its own process (as in production, and out of the generator's way)."""
    port = free_port()
    env = {
        **os.environ,
        "PGSCHED_DSN": api_settings.require_dsn(),
        "PGSCHED_API_TOKEN": ADMIN_TOKEN,
        # Checks such as ignored_auth send bad tokens on purpose: keep the per-client 429 out of the way.
        "PGSCHED_API_AUTH_FAILURE_LIMIT": "1000000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = LiveApi(f"http://127.0.0.1:{port}", api_settings)
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{api.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, message="pgsched api up")
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_document_is_openapi_3_and_lists_every_route(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/jobs", "/jobs/batch", "/jobs/{id}", "/dead", "/schedules/{name}/runs", "/health", "/metrics"):
        assert path in doc["paths"]


def _failures(recorder: Any) -> list[str]:
    found = []
    for checks in recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                info = check.failure_info
                found.append(f"{recorder.label}: {info.failure.title}: {info.failure.message}\n{info.code_sample}")
    return found


@pytest.mark.timeout(1200)
def test_every_check_and_phase_finds_no_failure(conformance_api: LiveApi) -> None:
    with conformance_api.client() as c:
        c.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "backup"})
        c.post("/jobs", json={"task": "seed"})
        document = c.get("/openapi.json").json()
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "request-timeout": 60,
            "base-url": conformance_api.url,
            "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            # A task name no live worker serves is refused (422, field task) unless allow_unknown_task:
            # the generated names are valid by the schema but served by nobody.
            "operations": [
                {
                    "include-path-regex": "^/jobs(/batch)?$",
                    "include-method": "POST",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
                }
            ],
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},
            },
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    failures: list[str] = []
    phases: set[str] = set()
    finished = False
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished | FuzzScenarioFinished):
            failures.extend(_failures(event.recorder))
            if isinstance(event, ScenarioFinished):
                phases.add(str(event.phase))
        elif isinstance(event, NonFatalError | FatalError):
            failures.append(f"error: {event}")
        elif isinstance(event, EngineFinished):
            finished = True
    assert finished
    assert not failures, "\n\n".join(failures[:20])
    print(f"schemathesis phases with scenarios: {sorted(phases)}")
