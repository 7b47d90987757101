"""Browser kit: Debian Chromium driven by Playwright against a real API server and database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgsched.config import Settings
from tests.api.conftest import ADMIN_TOKEN, LiveApi, serve_api
from tests.worker.conftest import spawn_worker  # noqa: F401 - real worker processes for "see it finish"

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API keeps an event loop running in this thread
    while it is open, which would break every asyncio test that runs after it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def open_dashboard(browser: Any, settings: Settings, width: int, height: int) -> Iterator[tuple[Any, LiveApi]]:
    """A live API and a page of a fresh browser context (its own storage) of the given size."""
    # No stand-in registry rows: their worker would show on the workers pages. Jobs come from real workers' tasks.
    with serve_api(settings.with_(api_token=ADMIN_TOKEN), tasks=()) as api:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page, api
        context.close()


@pytest.fixture
def dashboard(browser: Any, settings: Settings) -> Iterator[tuple[Any, LiveApi]]:
    with open_dashboard(browser, settings, 1280, 900) as opened:
        yield opened


@pytest.fixture
def shot() -> Callable[[Any, str], None]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return save


def sign_in(page: Any, api: LiveApi, token: str = ADMIN_TOKEN) -> None:
    page.goto(api.url + "/")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
