"""Built-in tasks run by a real worker: pgsched.shell and pgsched.http (against a local server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


def settle(conn: Conn, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        row = conn.execute("SELECT state::text, result, errors FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
        return row if row and row["state"] in ("succeeded", "dead") else None

    return done()  # type: ignore[return-value]


async def finish(conn: Conn, job_id: int) -> dict[str, Any]:
    return await until(lambda: settle(conn, job_id), timeout=15)  # type: ignore[no-any-return]


def shell_job(conn: Conn, **args: Any) -> int:
    return insert_jobs(conn, 1, task="pgsched.shell", args=args, max_attempts=1)[0]


async def test_the_shell_task_is_disabled_unless_the_worker_allows_it(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker()
    row = await finish(conn, shell_job(conn, argv=["echo", "hi"]))
    assert row["state"] == "dead"
    assert "start the worker with --allow-shell" in row["errors"][0]["error"]


async def test_the_shell_task_runs_argv_without_a_shell_in_a_minimal_environment(
    start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker(allow_shell=True)
    echo = await finish(conn, shell_job(conn, argv=["echo", "hello $HOME; world"]))
    assert echo["result"]["stdout"] == "hello $HOME; world\n"
    env = await finish(conn, shell_job(conn, argv=["env"], env={"GREETING": "hi"}))
    names = {line.split("=", 1)[0] for line in env["result"]["stdout"].splitlines()}
    assert names <= {"PATH", "LANG", "GREETING", "PWD", "SHLVL", "_"}
    assert "GREETING" in names and "PGSCHED_DSN" not in names


async def test_a_failing_command_fails_the_attempt_with_its_status(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker(allow_shell=True)
    row = await finish(conn, shell_job(conn, command="echo oops >&2; exit 3", shell=True))
    assert row["state"] == "dead"
    assert row["errors"][0]["error"] == "ShellCommandFailed: command exited with status 3: oops"


async def test_a_shell_timeout_kills_the_whole_process_group(
    start_worker: StartWorker, conn: Conn, tmp_path: Path
) -> None:
    await start_worker(allow_shell=True)
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    row = await finish(conn, shell_job(conn, argv=["sh", "-c", script], timeout=0.5))
    assert row["state"] == "dead"
    assert "timed out after 0.5s" in row["errors"][0]["error"]
    child = int(pidfile.read_text())
    await until(lambda: _gone(child), timeout=5, message="the background child survived")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_shell_output_is_captured_and_capped(start_worker: StartWorker, conn: Conn) -> None:
    await start_worker(allow_shell=True)
    row = await finish(conn, shell_job(conn, command="yes a | head -c 200000", shell=True, max_output_bytes=1000))
    assert row["state"] == "succeeded"
    assert (len(row["result"]["stdout"]), row["result"]["stdout_truncated"]) == (1000, True)


# ---------------------------------------------------------------- http
class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = 503 if self.path == "/fail" else 200
        payload = b"try later" if status == 503 else b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.seen
    server.shutdown()
    server.server_close()


def http_job(conn: Conn, **args: Any) -> int:
    return insert_jobs(conn, 1, task="pgsched.http", args=args, max_attempts=1)[0]


async def test_the_http_task_posts_with_the_job_id_as_idempotency_key(
    start_worker: StartWorker, conn: Conn, http_server: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = http_server
    await start_worker(http_allowlist=("127.0.0.1",))
    job_id = http_job(conn, url=f"{base}/hook", json={"a": 1}, headers={"X-Trace": "t1"})
    row = await finish(conn, job_id)
    assert row["state"] == "succeeded"
    assert row["result"]["status"] == 200 and json.loads(row["result"]["body"]) == {"ok": True}
    (request,) = seen
    assert request["headers"]["Idempotency-Key"] == str(job_id)
    assert request["headers"]["X-Trace"] == "t1"
    assert json.loads(request["body"]) == {"a": 1}


async def test_a_non_2xx_answer_fails_the_attempt_with_the_status(
    start_worker: StartWorker, conn: Conn, http_server: tuple[str, list[dict[str, Any]]]
) -> None:
    base, _ = http_server
    await start_worker(http_allowlist=("127.0.0.1",))
    row = await finish(conn, http_job(conn, url=f"{base}/fail", body="x"))
    assert row["state"] == "dead"
    assert row["errors"][0]["error"] == f"HttpStatusError: HTTP 503 from POST {base}/fail: try later"


async def test_a_host_outside_the_allowlist_is_refused_without_a_request(
    start_worker: StartWorker, conn: Conn, http_server: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = http_server
    await start_worker(http_allowlist=("example.com",))
    row = await finish(conn, http_job(conn, url=f"{base}/hook"))
    assert row["state"] == "dead"
    assert "not in this worker's HTTP allowlist" in row["errors"][0]["error"]
    assert seen == []
