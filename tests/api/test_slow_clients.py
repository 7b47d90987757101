"""Slow and hostile clients against a real uvicorn server: unfinished headers are cut off at the
header deadline, a trickling body gets 408, and neither blocks a well-behaved client meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pgsched.config import Settings
from tests.api.conftest import ADMIN_TOKEN, LiveApi, serve_api
from tests.support.waiting import wait_until

SLOW_CLIENTS = 50


@pytest.fixture
def edgy_api(api_settings: Settings) -> Iterator[LiveApi]:
    settings = api_settings.with_(api_header_timeout_seconds=1.0, api_body_timeout_seconds=1.0)
    with serve_api(settings) as api:
        yield api


def _connect(api: LiveApi) -> socket.socket:
    host, port = api.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def test_connections_with_unfinished_headers_are_closed_at_the_header_deadline(edgy_api: LiveApi) -> None:
    slow = [_connect(edgy_api) for _ in range(SLOW_CLIENTS)]
    silent = _connect(edgy_api)  # connects and never sends a byte
    try:
        for sock in slow:
            sock.sendall(b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never finish
        with edgy_api.client() as c:
            assert c.get("/jobs").status_code == 200  # a well-behaved client is served meanwhile
        pending = {*slow, silent}

        def all_closed() -> bool:
            pending.difference_update({s for s in pending if _closed_by_server(s)})
            return not pending

        wait_until(all_closed, timeout=15, message="slow connections closed by the server")
    finally:
        for sock in [*slow, silent]:
            sock.close()


def test_a_keep_alive_connection_is_also_timed_out_on_its_second_requests_headers(edgy_api: LiveApi) -> None:
    sock = _connect(edgy_api)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # then stall inside the next request's headers
        wait_until(lambda: _closed_by_server(sock), timeout=15)
    finally:
        sock.close()


def test_a_body_that_trickles_in_gets_408_at_the_body_deadline(edgy_api: LiveApi) -> None:
    sock = _connect(edgy_api)
    try:
        head = (
            "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"task": ')
        reply = wait_until(lambda: _reply(sock), timeout=15)
        sock.settimeout(5)
        while chunk := sock.recv(65536):  # the server closes after the 408 (Connection: close)
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply
    finally:
        sock.close()


def _reply(sock: socket.socket) -> bytes:
    sock.settimeout(0.05)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""
