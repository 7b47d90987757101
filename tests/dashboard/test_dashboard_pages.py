"""The dashboard's pages in headless Chromium: URLs of their own, lists that keep their page across the
2 s refresh, bulk retry, schedule editing, charts from stored history, scopes, and narrow screens."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.config import Settings
from tests.api.conftest import LiveApi
from tests.dashboard.conftest import ARTIFACTS, open_dashboard, sign_in
from tests.support.factories import insert_jobs
from tests.support.rollup import rollup_caught_up
from tests.support.waiting import wait_until

ACTIONS = {"retry", "cancel", "delete", "pause", "resume", "trigger now", "purge all", "retry all", "save", "create"}
FITS = "() => document.scrollingElement.scrollWidth <= window.innerWidth"
SCREENS = Path("/work/screens")


@pytest.fixture
def screen(shot: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """Save a full-page screenshot among the test artifacts (and in /work/screens when it exists)."""

    def save(page: Any, name: str) -> None:
        shot(page, name)
        if SCREENS.is_dir():
            shutil.copy(ARTIFACTS / f"{name}.png", SCREENS / f"{name}.png")

    return save


@pytest.fixture
def narrow(browser: Any, settings: Settings) -> Iterator[tuple[Any, LiveApi]]:
    with open_dashboard(browser, settings, 390, 844) as opened:
        yield opened


# Browser timing on a loaded 2-core machine: a page test gets two more tries (three failures still fail).
pytestmark = pytest.mark.flaky(reruns=2)


def rollup_now(dsn: str) -> None:
    """One leader pass of the chart rollup, on a thread of its own (Playwright's loop holds this one)."""

    thread = threading.Thread(target=asyncio.run, args=(rollup_caught_up(dsn),))
    thread.start()
    thread.join(30)


def finished_history(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    for minutes_ago, n, state in ((50, 30, "succeeded"), (30, 12, "succeeded"), (20, 4, "dead"), (5, 20, "succeeded")):
        ids = insert_jobs(conn, n, task="report", queue="emails", state=state, attempt=1)
        at = now - timedelta(minutes=minutes_ago)
        conn.execute(
            "UPDATE pgsched.jobs SET run_at = %s, started_at = %s, finished_at = %s WHERE id = ANY(%s)",
            [at - timedelta(seconds=2), at - timedelta(seconds=1), at, ids],
        )


def wait_for_refreshes(page: Any, n: int = 2) -> None:
    """Wait until the page has refreshed n more times (its status line changes each time)."""
    for _ in range(n):
        before = page.inner_text("#status")
        page.wait_for_function("(b) => document.getElementById('status').textContent !== b", arg=before, polling=200)


def visible_actions(page: Any) -> set[str]:
    texts = page.locator("main button:visible").all_inner_texts()
    return {t.strip().lower() for t in texts} & ACTIONS


def test_every_job_queue_schedule_and_worker_has_a_url_that_opens_in_a_new_tab(
    dashboard: Any, conn: psycopg.Connection[Any], spawn_worker: Callable[..., Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    spawn_worker()
    # Runs until the test ends (the worker is killed at teardown): on a loaded machine the pages below can
    # take longer than a short job, which would leave the worker page with nothing to show.
    (job_id,) = insert_jobs(conn, 1, task="sleepy", args={"seconds": 600})
    with api.client() as client:
        client.post(
            "/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "noop", "timezone": "Asia/Tokyo"}
        )
    worker = wait_until(  # the worker running it (a worker that re-registered has a new id)
        lambda: conn.execute(
            "SELECT worker_id AS id FROM pgsched.jobs WHERE id = %s AND state = 'running'", [job_id]
        ).fetchone(),
        timeout=15,
    )
    sign_in(page, api)
    page.wait_for_selector("#nav a.active:has-text('Overview')")
    tab = page.context.new_page()  # a new tab of the same browser: the token is kept, no sign-in
    tab.goto(f"{api.url}/#/jobs/{job_id}")
    tab.wait_for_selector(f"#job-detail h2:has-text('Job {job_id}')")
    assert tab.is_visible("#job-detail .state.running") and not tab.is_visible("#login")
    assert "running for" in tab.inner_text("#job-detail")
    screen(tab, "job-detail")
    tab.goto(f"{api.url}/#/queues/default")
    tab.wait_for_selector("#queue-detail h2:has-text('Queue default')")
    tab.wait_for_selector("#queue-detail .kv:has-text('succeeded 1d (default)')")  # its retention, per final state
    tab.goto(f"{api.url}/#/schedules/nightly")
    tab.wait_for_selector("#schedule-upcoming li:has-text('Asia/Tokyo')")
    tab.goto(f"{api.url}/#/workers/{worker['id']}")
    tab.wait_for_selector(f"#worker-detail li:has-text('#{job_id} sleepy')")
    screen(tab, "worker")
    tab.goto(f"{api.url}/#/workers")
    tab.wait_for_selector(f"#workers-list li:has-text('#{job_id}')")
    screen(tab, "workers")
    tab.click(f"#workers-list a:text-is('#{job_id}')")
    tab.wait_for_url(f"**/#/jobs/{job_id}")


def test_loaded_pages_and_filters_survive_the_refresh(
    dashboard: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    insert_jobs(conn, 130, queue="bulk", args={"n": 1})
    insert_jobs(conn, 5, queue="other")
    sign_in(page, api)
    page.goto(f"{api.url}/#/jobs?queue=bulk")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 50", polling=200)
    page.click("#jobs-more")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 100", polling=200)
    (newest,) = insert_jobs(conn, 1, queue="bulk")
    wait_for_refreshes(page)
    page.wait_for_selector(f"#jobs-table tr[data-key='{newest}']")
    assert page.locator("#jobs-table tbody tr").count() == 100  # still two pages, the new job on top
    assert page.input_value("#f-queue") == "bulk"
    assert page.locator("#jobs-table tbody tr").first.get_attribute("data-key") == str(newest)
    page.click("#jobs-more")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 131", polling=200)
    wait_for_refreshes(page)
    assert page.locator("#jobs-table tbody tr").count() == 131
    assert page.inner_text("#job-tabs a[data-view=available] .count") == "131"
    screen(page, "jobs")


def test_dead_jobs_are_retried_in_bulk_from_the_dead_tab(
    dashboard: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    errors = [
        {"attempt": 3, "at": "2026-01-01T00:00:00+00:00", "error": "RuntimeError: boom", "traceback": "Traceback..."}
    ]
    first, second, third = insert_jobs(
        conn, 3, task="fail_always", state="dead", attempt=3, max_attempts=3, errors=errors
    )
    conn.execute("UPDATE pgsched.jobs SET finished_at = now() WHERE state = 'dead'")
    sign_in(page, api)
    page.goto(f"{api.url}/#/jobs?view=dead")
    # The dead view's own rows, not what a previous page left in the table: exactly these three.
    page.wait_for_function(
        "ids => ids.every(id => document.querySelector(`#jobs-table tr[data-key='${id}'] input[type=checkbox]`))"
        " && document.querySelectorAll('#jobs-table tbody tr').length === ids.length",
        arg=[first, second, third],
        polling=200,
        timeout=30_000,
    )
    page.check(f"#jobs-table tr[data-key='{first}'] input[type=checkbox]")
    page.check(f"#jobs-table tr[data-key='{second}'] input[type=checkbox]")
    page.wait_for_selector("#bulk-count:has-text('2 selected')")
    screen(page, "jobs-bulk")
    page.click("#bulk-bar button[data-bulk=retry]")
    page.wait_for_selector("#bulk-message:has-text('retry: 2 done')")
    page.wait_for_selector(f"#jobs-table tr[data-key='{first}']", state="detached")
    states = conn.execute("SELECT id, state::text AS s FROM pgsched.jobs ORDER BY id").fetchall()
    assert states == [{"id": first, "s": "queued"}, {"id": second, "s": "queued"}, {"id": third, "s": "dead"}]


def test_a_schedule_is_edited_and_deleted_from_its_own_page(
    dashboard: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    with api.client() as client:
        client.post(
            "/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "noop", "timezone": "Europe/Paris"}
        )
    sign_in(page, api)
    page.goto(f"{api.url}/#/schedules/nightly")
    page.wait_for_selector("#schedule-upcoming li:has-text('03:00') >> text=Europe/Paris")
    assert page.locator("#schedule-upcoming li").count() == 5
    page.fill("#e-cron", "30 4 * * *")
    page.click("#schedule-edit-form button[type=submit]")
    page.wait_for_selector("#edit-saved:has-text('Saved')")
    page.wait_for_selector("#schedule-upcoming li:has-text('04:30')")
    row = conn.execute("SELECT cron, timezone FROM pgsched.schedules WHERE name = 'nightly'").fetchone()
    assert row == {"cron": "30 4 * * *", "timezone": "Europe/Paris"}
    screen(page, "schedule")
    page.click("#schedule-delete")
    page.click("#schedule-delete:has-text('Click again')")
    page.wait_for_url("**/#/schedules")
    assert conn.execute("SELECT count(*) AS n FROM pgsched.schedules").fetchone() == {"n": 0}
    page.wait_for_selector("#schedules-table td:has-text('no schedules yet')")
    screen(page, "schedules")


def test_charts_are_drawn_from_stored_history_before_the_tab_opens_and_after_a_reload(
    dashboard: Any, conn: psycopg.Connection[Any], dsn: str, screen: Callable[..., None]
) -> None:
    page, api = dashboard
    finished_history(conn)
    rollup_now(dsn)  # the leader's pass, before any tab is open
    sign_in(page, api)
    bars = "#charts svg.chart rect"
    page.wait_for_function(f"() => document.querySelectorAll('{bars}').length >= 4", polling=200)
    screen(page, "overview")
    page.reload()
    page.wait_for_function(f"() => document.querySelectorAll('{bars}').length >= 4", polling=200)
    assert page.locator("#charts svg.chart").count() == 3
    page.select_option("#c-window", "24h")
    page.fill("#c-queue", "nope")
    page.press("#c-queue", "Enter")
    page.wait_for_selector("#charts p:has-text('No finished jobs')")
    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.fill("#c-queue", "")
    page.press("#c-queue", "Enter")  # 24 h in hour buckets: the same jobs in one or two bars per series
    page.wait_for_selector("#charts p:has-text('buckets of 60 min')")
    assert page.locator(bars).count() >= 2
    screen(page, "overview-dark")


def test_a_read_only_token_sees_every_page_and_no_action_button(
    dashboard: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    with api.client() as client:
        reader = client.post("/tokens", json={"name": "viewer", "scope": "read"}).json()["token"]
        client.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "noop"})
    (dead,) = insert_jobs(conn, 1, state="dead", attempt=5, errors=[{"attempt": 5, "error": "boom"}])
    conn.execute("UPDATE pgsched.jobs SET finished_at = now() WHERE id = %s", [dead])
    insert_jobs(conn, 1, queue="emails")
    sign_in(page, api, token=reader)
    page.wait_for_selector("#queues tr[data-key=emails]")
    pages = {
        "#/overview": "#queues tr[data-key=emails]",
        "#/jobs?view=dead": f"#jobs-table tr[data-key='{dead}']",
        f"#/jobs/{dead}": "#job-detail .state.dead",
        "#/queues/emails": "#queue-detail h2",
        "#/schedules": "#schedules-table td:text-is('nightly')",
        "#/schedules/nightly": "#schedule-upcoming li",
        "#/dead": f"#dead-table tr[data-key='{dead}']",
    }
    for hash_url, ready in pages.items():
        page.goto(f"{api.url}/{hash_url}")
        page.wait_for_selector(ready)
        assert visible_actions(page) == set(), hash_url
        assert page.locator("main input[type=checkbox]").count() == 0, hash_url
    assert page.locator("#nav a[data-view=new]").count() == 0
    screen(page, "read-only-dead")


def test_a_job_with_2_mib_of_args_does_not_break_the_table(
    dashboard: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = dashboard
    (big,) = insert_jobs(conn, 1, args={"blob": "x" * (2 * 1024 * 1024)})
    insert_jobs(conn, 3, args={"small": True})
    sign_in(page, api)
    page.goto(f"{api.url}/#/jobs")
    row = f"#jobs-table tr[data-key='{big}']"
    page.wait_for_selector(row)
    assert page.evaluate(FITS)
    table = page.locator("#jobs-table table").bounding_box()
    card = page.locator("#view-jobs .card").bounding_box()
    assert table is not None and card is not None and table["width"] <= card["width"]
    cell = page.locator(f"{row} td.args").bounding_box()
    assert cell is not None and cell["height"] < 120
    assert "2.0 MiB" in page.inner_text(f"{row} td.args")
    page.click(row)
    page.wait_for_selector("#job-args")
    assert page.evaluate(FITS)
    screen(page, "jobs-2mib")


def test_every_page_fits_390_px_without_sideways_scroll(
    narrow: Any, conn: psycopg.Connection[Any], screen: Callable[..., None]
) -> None:
    page, api = narrow
    (big,) = insert_jobs(conn, 1, task="a_rather_long_task_name_for_a_phone", args={"blob": "y" * 200_000})
    with api.client() as client:
        client.post("/schedules", json={"name": "nightly", "cron": "0 3 * * *", "task": "noop"})
    sign_in(page, api)
    page.wait_for_selector("#queues tr[data-key=default]")
    for hash_url in ("#/overview", "#/jobs", f"#/jobs/{big}", "#/queues/default", "#/schedules", "#/schedules/nightly",
                     "#/dead", "#/workers", "#/new"):  # fmt: skip
        page.goto(f"{api.url}/{hash_url}")
        page.wait_for_timeout(0)
        wait_for_refreshes(page, 1)
        assert page.evaluate(FITS), hash_url
        if hash_url in {"#/overview", "#/jobs"}:
            screen(page, f"narrow-{hash_url.strip('#/')}")


def test_a_job_page_shows_each_attempts_kind_and_the_tasks_progress(
    dashboard: Any, conn: psycopg.Connection[Any]
) -> None:
    page, api = dashboard
    errors = [
        {
            "attempt": 1,
            "at": "2026-01-01T00:00:00+00:00",
            "error": "snoozed for 30s",
            "traceback": None,
            "kind": "snooze",
        },
        {
            "attempt": 1,
            "at": "2026-01-01T00:01:00+00:00",
            "error": "retry after 5s",
            "traceback": None,
            "kind": "retry",
        },
    ]
    (job_id,) = insert_jobs(conn, 1, task="sync_account", state="running", attempt=1, lease=9, errors=errors, snoozes=1)
    conn.execute(
        "UPDATE pgsched.jobs SET started_at = now(), progress = 0.4, progress_message = 'chunk 4 of 10',"
        " progress_at = now(), extended_lease = 9, extended_until = now() + interval '30 seconds' WHERE id = %s",
        [job_id],
    )
    sign_in(page, api)
    page.goto(f"{api.url}/#/jobs/{job_id}")
    page.wait_for_selector("#job-detail code.kind")
    assert page.locator("#job-detail code.kind").all_inner_texts() == ["snooze", "retry"]
    text = page.inner_text("#job-detail")
    assert "40% · chunk 4 of 10" in text and "lease until" in text
