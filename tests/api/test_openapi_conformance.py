"""Schemathesis against /openapi.json: generated requests for every operation (bounded examples)
find no server error and no response that contradicts the document."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import ADMIN_TOKEN, LiveApi

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_document_is_openapi_3_and_lists_every_route(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/jobs", "/jobs/batch", "/jobs/{id}", "/dead", "/schedules/{name}/runs", "/health", "/metrics"):
        assert path in doc["paths"]


def test_generated_requests_get_no_server_error_and_conform_to_the_document(
    live_api: LiveApi, client: httpx.Client
) -> None:
    client.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "backup"})
    client.post("/jobs", json={"task": "seed"})
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    failures: list[str] = []
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case: schemathesis.Case) -> None:
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.call_and_validate(
                base_url=live_api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=CHECKS
            )

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
    assert sorted(calls) == sorted(op.label for op in operations)  # every operation was exercised
    print(f"schemathesis: {sum(calls.values())} requests over {len(calls)} operations")
