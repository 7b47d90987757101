"""The workflow pages in headless Chromium: the list, one workflow's steps with states, levels, durations and
errors, retrying a dead step (the workflow resumes) and cancelling the rest; a read-only token sees no button."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import ADMIN_TOKEN
from tests.dashboard.conftest import sign_in

pytestmark = pytest.mark.flaky(reruns=2)


def _diamond(api_url: str) -> dict[str, Any]:
    body = {
        "name": "nightly-etl",
        "steps": [
            {"key": "extract", "task": "extract"},
            {"key": "left", "task": "transform", "after": ["extract"]},
            {"key": "right", "task": "transform", "after": ["extract"]},
            {"key": "load", "task": "load", "after": ["left", "right"]},
        ],
    }
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        response = client.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _state(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT state::text AS s FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return str(row["s"])


def test_a_workflow_page_shows_its_steps_and_retries_a_dead_one_then_cancels_the_rest(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    created = _diamond(api.url)
    extract, left, right, load = created["job_ids"]
    errors = '[{"attempt": 1, "at": "2026-01-01T00:00:00+00:00", "error": "RuntimeError: source down"}]'
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'running', attempt = 1, started_at = now() - interval '2 seconds'"
        " WHERE id = %s",
        [extract],
    )
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'dead', finished_at = now(), errors = %s::jsonb WHERE id = %s",
        [errors, extract],
    )
    assert (_state(conn, left), _state(conn, load)) == ("cancelled", "cancelled")

    sign_in(page, api)
    page.goto(f"{api.url}/#/workflows")
    page.wait_for_selector(f"#workflows-table tr[data-key='{created['id']}']:has-text('failed')")
    page.click(f"#workflows-table tr[data-key='{created['id']}']")
    page.wait_for_selector("#workflow-detail h2:has-text('nightly-etl')")
    page.wait_for_selector(f"#workflow-steps tr[data-step='{extract}']:has-text('RuntimeError: source down')")
    step_rows = page.locator("#workflow-steps tbody tr")
    assert step_rows.count() == 4
    assert page.inner_text(f"#workflow-steps tr[data-step='{load}'] td:first-child") == "2"  # its level
    assert "2.0" in page.inner_text(f"#workflow-steps tr[data-step='{extract}']")  # ran for about 2 s
    shot(page, "workflow-failed")

    page.click(f"#workflow-steps tr[data-step='{extract}'] button:has-text('Retry')")
    page.wait_for_selector(f"#workflow-steps tr[data-step='{load}']:has-text('waiting')")
    assert (_state(conn, extract), _state(conn, left), _state(conn, load)) == ("queued", "waiting", "waiting")

    page.click("#workflow-detail button:has-text('Cancel workflow')")
    page.click("#workflow-detail button:has-text('Click again')")
    page.wait_for_selector("#workflow-detail h2 .state.cancelled")
    assert {_state(conn, i) for i in (extract, left, right, load)} == {"cancelled"}
    assert console == []


def test_a_read_only_token_sees_a_workflow_without_buttons(dashboard: Any, conn: psycopg.Connection[Any]) -> None:
    page, api = dashboard
    created = _diamond(api.url)
    conn.execute("UPDATE pgsched.jobs SET state = 'dead', finished_at = now() WHERE id = %s", [created["job_ids"][0]])
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        token = client.post("/tokens", json={"name": "viewer", "scope": "read"}).json()["token"]
    sign_in(page, api, token)
    page.goto(f"{api.url}/#/workflows/{created['id']}")
    page.wait_for_selector("#workflow-detail h2:has-text('nightly-etl')")
    page.wait_for_selector("#workflow-steps tbody tr >> nth=3")
    assert page.locator("#workflow-detail button").count() == 0
