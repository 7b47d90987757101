"""The dashboard in headless Chromium: sign in, create and watch a job, retry the dead, drive schedules, no XSS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests.dashboard.conftest import sign_in
from tests.support.factories import insert_jobs
from tests.support.waiting import wait_until


def test_a_token_is_required_and_a_wrong_one_is_refused(dashboard: Any, shot: Callable[..., None]) -> None:
    page, api = dashboard
    page.goto(api.url + "/")
    assert page.is_visible("#login")
    assert not page.is_visible("#nav")
    sign_in(page, api, token="not-a-token")
    page.wait_for_selector("#login-error:has-text('not accepted')")
    shot(page, "login")
    sign_in(page, api)
    page.wait_for_selector("#nav a.active:has-text('Overview')")
    assert not page.is_visible("#login")


def test_a_page_opened_while_sign_in_is_answering_gets_the_tokens_actions(
    dashboard: Any, conn: psycopg.Connection[Any]
) -> None:
    """A slow /whoami (a loaded server): a list opened meanwhile is drawn once the scope is known, with its
    checkboxes, not drawn read-only and then kept because its filters did not change."""
    page, api = dashboard
    (job,) = insert_jobs(conn, 1, task="fail_always", state="dead", attempt=3, max_attempts=3)
    conn.execute("UPDATE pgsched.jobs SET finished_at = now() WHERE id = %s", [job])
    held: list[Any] = []
    page.route("**/dashboard/api/whoami", lambda route: held.append(route))  # noqa: PLW0108 - Playwright wraps a Python function, not a builtin
    sign_in(page, api)
    page.wait_for_function("() => !!localStorage.length")  # the token is stored; /whoami has not answered
    page.goto(f"{api.url}/#/jobs?view=dead")
    while not held:  # Playwright runs the route handler while it waits
        page.wait_for_timeout(50)
    for route in held:
        route.continue_()
    page.unroute("**/dashboard/api/whoami")
    page.wait_for_selector(f"#jobs-table tr[data-key='{job}'] input[type=checkbox]")


def _serves(dsn: str, task: str) -> bool:
    """POST /jobs refuses a task no live worker has registered: the form's job needs the worker up first."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pgsched.tasks WHERE name = %s", [task]).fetchone() is not None


def test_a_job_created_from_the_form_runs_and_shows_its_result(
    dashboard: Any, spawn_worker: Callable[..., Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    spawn_worker()
    wait_until(lambda: _serves(api.settings.require_dsn(), "echo"), timeout=30, message="worker did not register echo")
    sign_in(page, api)
    page.click("#nav a[data-view=new]")
    page.fill("#j-task", "echo")
    page.fill("#j-args", "{not json")
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#job-error:has-text('args')")
    page.fill("#j-queue", "Bad Queue")
    page.fill("#j-args", '{"greeting": "hi"}')
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#job-error:has-text('queue')")
    shot(page, "new-job-error")
    page.fill("#j-queue", "default")
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#job-created:has-text('Enqueued job')")
    job_id = page.get_attribute("#job-created", "data-job-id")
    shot(page, "new-job")
    page.click("#nav a[data-view=jobs]")
    page.click(f"#jobs-table tr:has(td:text-is('{job_id}'))")
    page.wait_for_selector("#job-detail .state.succeeded", timeout=30_000)  # live refresh, no reload
    assert '"greeting": "hi"' in page.inner_text("#job-detail")
    shot(page, "job-detail")
    page.click("#nav a[data-view=overview]")
    page.wait_for_selector("#queues td:text-is('default')")
    page.wait_for_selector("#workers td:text-is('worker')")
    shot(page, "overview")


def test_a_dead_job_is_retried_from_the_dead_letter_page(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    (job_id,) = insert_jobs(
        conn,
        1,
        task="fail_always",
        state="dead",
        attempt=3,
        max_attempts=3,
        errors=[{"attempt": 3, "at": "2026-01-01T00:00:00+00:00", "error": "RuntimeError: boom", "traceback": "..."}],
    )
    conn.execute("UPDATE pgsched.jobs SET finished_at = now() WHERE id = %s", [job_id])
    sign_in(page, api)
    page.click("#nav a[data-view=dead]")
    row = f"#dead-table tr:has(td:text-is('{job_id}'))"
    page.wait_for_selector(row)
    assert "RuntimeError: boom" in page.inner_text(row)
    shot(page, "dead-letter")
    page.click(f"{row} button:has-text('Retry')")
    page.wait_for_selector(row, state="detached")
    row_now = conn.execute("SELECT state::text AS state FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row_now == {"state": "queued"}


def test_schedules_are_created_paused_and_triggered_from_the_page(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    sign_in(page, api)
    page.click("#nav a[data-view=schedules]")
    page.fill("#s-name", "nightly")
    page.fill("#s-cron", "61 * * * *")
    page.fill("#s-task", "noop")
    page.click("#s-preview")
    page.wait_for_selector("#schedule-error:has-text('cron')")
    page.fill("#s-cron", "0 3 * * *")
    page.fill("#s-tz", "Europe/Paris")
    page.click("#s-preview")
    page.wait_for_selector("#schedule-preview li")
    page.click("#schedule-form button[type=submit]")
    row = "#schedules-table tr:has(td:text-is('nightly'))"
    page.wait_for_selector(row)
    page.click(f"{row} button:has-text('Pause')")
    page.wait_for_selector(f"{row} td:text-is('paused')")
    page.click(f"{row} button:has-text('Trigger now')")
    page.click(row)
    page.wait_for_selector("#schedule-detail .state")
    shot(page, "schedules")
    enabled = conn.execute("SELECT enabled FROM pgsched.schedules WHERE name = 'nightly'").fetchone()
    runs = conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE schedule_name = 'nightly'").fetchone()
    assert enabled == {"enabled": False}
    assert runs == {"n": 1}


def test_args_with_a_script_tag_are_shown_as_text_and_never_run(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    payload = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    (job_id,) = insert_jobs(conn, 1, task="noop", args={"html": payload})
    sign_in(page, api)
    page.click("#nav a[data-view=jobs]")
    page.click(f"#jobs-table tr:has(td:text-is('{job_id}'))")
    page.wait_for_selector("#job-args")
    assert json.dumps(payload) in page.inner_text("#job-args")  # shown as JSON text, quotes escaped
    assert page.evaluate("window.__xss === undefined")
    assert page.locator("#job-detail script").count() == 0
    shot(page, "xss-as-text")


def test_a_queue_is_paused_and_resumed_from_the_overview_and_shows_its_limits(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    insert_jobs(conn, 1, queue="emails", run_at="2999-01-01T00:00:00+00:00")
    conn.execute("INSERT INTO pgsched.queues (name, concurrency, rate_limit) VALUES ('emails', 4, 50)")
    sign_in(page, api)
    page.wait_for_selector("#queues tr:has(td:text-is('emails')) td:has-text('concurrency 4, rate 50/1 s')")
    page.click("#queues button[data-queue=emails]:text-is('pause')")
    page.wait_for_selector("#queues tr:has(td:text-is('emails')) td:has-text('paused, concurrency 4')")
    row = conn.execute("SELECT paused FROM pgsched.queues WHERE name = 'emails'").fetchone()
    assert row is not None and row["paused"] is True
    shot(page, "queue-paused")
    page.click("#queues button[data-queue=emails]:text-is('resume')")
    page.wait_for_selector("#queues button[data-queue=emails]:text-is('pause')")
    row = conn.execute("SELECT paused FROM pgsched.queues WHERE name = 'emails'").fetchone()
    assert row is not None and row["paused"] is False


def test_the_jobs_list_filters_by_tag_and_meta_and_a_job_shows_its_labels(
    dashboard: Any, conn: psycopg.Connection[Any], shot: Callable[..., None]
) -> None:
    page, api = dashboard
    tagged = conn.execute(
        "SELECT pgsched.enqueue('t', tags => '{billing}', meta => '{\"tenant\": \"acme\"}') AS id"
    ).fetchone()["id"]
    (plain,) = insert_jobs(conn, 1, task="t")
    sign_in(page, api)
    page.click("#nav a[data-view=jobs]")
    page.wait_for_selector(f"#jobs-table tr:has(td:text-is('{plain}'))")
    page.fill("#f-tag", "billing")
    page.fill("#f-meta", '{"tenant": "acme"}')
    page.press("#f-meta", "Enter")
    page.wait_for_selector(f"#jobs-table tr:has(td:text-is('{tagged}'))")
    wait_until(lambda: not page.is_visible(f"#jobs-table tr:has(td:text-is('{plain}'))"), timeout=10)
    assert "tag=billing" in page.url
    shot(page, "jobs-by-tag")
    page.click(f"#jobs-table tr:has(td:text-is('{tagged}'))")
    page.wait_for_selector("#job-meta:has-text('acme')")
    assert "billing" in page.inner_text("#job-detail")
