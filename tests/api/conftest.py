"""A real uvicorn server on a free loopback port, serving ``create_app`` against the test database."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from pgsched.api.serve import uvicorn_config
from pgsched.config import Settings
from tests.support.factories import TEST_TASKS, register_tasks
from tests.support.processes import free_port
from tests.support.waiting import wait_until

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class LiveApi:
    url: str
    settings: Settings

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextlib.contextmanager
def serve_api(settings: Settings, port: int | None = None, *, tasks: tuple[str, ...] = TEST_TASKS) -> Iterator[LiveApi]:
    """Serve the API in a thread until the block ends; ``tasks`` are published as served (POST /jobs refuses others)."""
    if tasks:
        register_tasks(settings.require_dsn(), *tasks)
    port = port or free_port()
    config = uvicorn_config(settings, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=30, message="uvicorn start")
        assert server.started, "uvicorn did not start"
        yield LiveApi(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_(api_token=ADMIN_TOKEN)


@pytest.fixture
def live_api(api_settings: Settings) -> Iterator[LiveApi]:
    with serve_api(api_settings) as api:
        yield api


@pytest.fixture
def client(live_api: LiveApi) -> Iterator[httpx.Client]:
    with live_api.client() as c:
        yield c
