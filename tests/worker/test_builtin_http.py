"""The pgsched.http built-in task run by a real worker against a local server: host:port allowlist, streaming caps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import psycopg
import pytest

from pgsched import Settings
from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until
from tests.worker.test_builtins import finish

Conn = psycopg.Connection[dict[str, Any]]

BIG = 50 * 1024 * 1024
_CHUNK = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []
    big_sent: ClassVar[list[int]] = []  # bytes the /big answer got out before the client hung up
    big_done: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = 503 if self.path == "/fail" else 200
        payload = b"try later" if status == 503 else b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        sent = 0
        try:
            while sent < BIG:
                self.wfile.write(b"x" * _CHUNK)
                sent += _CHUNK
        except OSError:
            pass  # the worker stopped reading and closed the connection
        finally:
            self.big_sent.append(sent)
            self.big_done.set()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, int, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.seen, _Handler.big_sent, _Handler.big_done = [], [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}", port, _Handler.seen
    server.shutdown()
    server.server_close()


def http_job(conn: Conn, max_attempts: int = 1, **args: Any) -> int:
    return insert_jobs(conn, 1, task="pgsched.http", args=args, max_attempts=max_attempts)[0]


async def test_the_http_task_posts_with_the_job_id_as_idempotency_key(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, port, seen = http_server
    await start_worker(settings.with_(http_allow=(f"127.0.0.1:{port}",)))
    job_id = http_job(conn, url=f"{base}/hook", json={"a": 1}, headers={"X-Trace": "t1"})
    row = await finish(conn, job_id)
    assert row["state"] == "succeeded"
    assert row["result"]["status"] == 200 and json.loads(row["result"]["body"]) == {"ok": True}
    (request,) = seen
    assert request["headers"]["Idempotency-Key"] == str(job_id)
    assert request["headers"]["X-Trace"] == "t1"
    assert json.loads(request["body"]) == {"a": 1}


async def test_a_non_2xx_answer_fails_the_attempt_with_the_status(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, port, _ = http_server
    await start_worker(settings.with_(http_allow=(f"127.0.0.1:{port}",)))
    row = await finish(conn, http_job(conn, url=f"{base}/fail", body="x"))
    assert row["state"] == "dead"
    assert row["errors"][0]["error"] == f"HttpStatusError: HTTP 503 from POST {base}/fail: try later"


async def test_a_host_outside_the_allowlist_is_refused_for_good_without_a_request(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, _, seen = http_server
    await start_worker(settings.with_(http_allow=("example.com",)))
    row = await finish(conn, http_job(conn, max_attempts=3, url=f"{base}/hook"))
    assert (row["state"], row["attempt"]) == ("dead", 1)
    assert "not in this worker's HTTP allowlist" in row["errors"][0]["error"]
    assert seen == []


async def test_a_host_only_entry_allows_the_default_port_of_the_scheme_only(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, port, seen = http_server
    await start_worker(settings.with_(http_allow=("127.0.0.1", f"localhost:{port}")))
    row = await finish(conn, http_job(conn, url=f"{base}/hook"))
    assert row["state"] == "dead"
    assert f"127.0.0.1:{port} is not in this worker's HTTP allowlist" in row["errors"][0]["error"]
    assert seen == []


async def test_a_50_mb_answer_is_read_only_up_to_the_workers_cap(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, port, _ = http_server
    await start_worker(settings.with_(http_allow=(f"127.0.0.1:{port}",), http_max_response_bytes=100_000))
    row = await finish(conn, http_job(conn, url=f"{base}/big", method="GET"))
    assert row["state"] == "succeeded"
    assert (len(row["result"]["body"]), row["result"]["body_truncated"]) == (100_000, True)
    await until(_Handler.big_done.is_set, timeout=15, message="the server is still sending: the worker did not hang up")
    (sent,) = _Handler.big_sent
    assert sent < BIG // 2  # what the worker took plus socket buffers, far from the 50 MB


async def test_a_job_may_ask_for_a_smaller_response_cap_but_not_a_larger_one(
    start_worker: StartWorker, conn: Conn, settings: Settings, http_server: tuple[str, int, list[dict[str, Any]]]
) -> None:
    base, port, _ = http_server
    await start_worker(settings.with_(http_allow=(f"127.0.0.1:{port}",), http_max_response_bytes=100_000))
    less = await finish(conn, http_job(conn, url=f"{base}/big", method="GET", max_response_bytes=10))
    assert less["result"]["body"] == "x" * 10
    more = await finish(conn, http_job(conn, max_attempts=3, url=f"{base}/big", method="GET", max_response_bytes=10**9))
    assert (more["state"], more["attempt"]) == ("dead", 1)
    assert "max_response_bytes: 1000000000 is over this worker's cap of 100000 bytes" in more["errors"][0]["error"]
