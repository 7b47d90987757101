"""The pgsched.shell built-in task run by real workers: allowlist, minimal environment, caps, process trees.

Workers here run in process (root in CI: commands then run as ``nobody``); the isolation tests that
need a worker process of their own are in test_shell_isolation.py, http in test_builtin_http.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched import Settings
from tests.support.factories import insert_jobs
from tests.worker.conftest import StartWorker, until

Conn = psycopg.Connection[dict[str, Any]]


def settle(conn: Conn, job_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT state::text, attempt, result, errors FROM pgsched.jobs WHERE id = %s", [job_id]
    ).fetchone()
    return row if row and row["state"] in ("succeeded", "dead") else None


async def finish(conn: Conn, job_id: int, timeout: float = 15) -> dict[str, Any]:
    return await until(lambda: settle(conn, job_id), timeout=timeout)  # type: ignore[no-any-return]


def shell_job(conn: Conn, max_attempts: int = 1, **args: Any) -> int:
    return insert_jobs(conn, 1, task="pgsched.shell", args=args, max_attempts=max_attempts)[0]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the command can write whatever user it runs as."""
    path = Path(tempfile.mkdtemp(prefix="pgsched-shell-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def allowing(settings: Settings, *entries: str, **more: Any) -> Settings:
    return settings.with_(shell_allow=entries, **more)


async def test_the_shell_task_is_disabled_unless_the_worker_allows_commands(
    start_worker: StartWorker, conn: Conn
) -> None:
    await start_worker()
    row = await finish(conn, shell_job(conn, argv=["echo", "hi"]))
    assert row["state"] == "dead"
    assert "allow commands with --allow-shell PATTERN" in row["errors"][0]["error"]


async def test_a_command_outside_the_allowlist_goes_dead_on_its_first_attempt_whoever_inserted_it(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "echo", "date +%s", "ls -l ..."))
    refused = [
        shell_job(conn, max_attempts=5, argv=["cat", "/etc/shadow"]),
        shell_job(conn, max_attempts=5, argv=["date", "-s", "2000-01-01"]),  # more arguments than the entry
        shell_job(conn, max_attempts=5, command="echo hi; id", shell=True),  # /bin/sh is not allowed
    ]
    allowed = [shell_job(conn, argv=["echo", "a", "b"]), shell_job(conn, argv=["ls", "-l", "/"])]
    for job_id in refused:
        row = await finish(conn, job_id)
        assert (row["state"], row["attempt"], len(row["errors"])) == ("dead", 1, 1)
        assert "TaskRefused: command" in row["errors"][0]["error"]
        assert "is not in this worker's shell allowlist" in row["errors"][0]["error"]
    assert [(await finish(conn, j))["state"] for j in allowed] == ["succeeded", "succeeded"]


async def test_the_shell_task_runs_argv_without_a_shell_in_a_minimal_environment(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "echo", "env"))
    echo = await finish(conn, shell_job(conn, argv=["echo", "hello $HOME; world"]))
    assert echo["result"]["stdout"] == "hello $HOME; world\n"
    env = await finish(conn, shell_job(conn, argv=["env"], env={"GREETING": "hi"}))
    lines = dict(line.split("=", 1) for line in env["result"]["stdout"].splitlines())
    assert set(lines) <= {"PATH", "LANG", "HOME", "GREETING", "PWD", "SHLVL", "_"}
    assert (lines["GREETING"], lines["HOME"]) == ("hi", "/")


async def test_a_job_may_not_set_variables_that_choose_or_load_code(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "env"))
    for name in ("LD_PRELOAD", "PATH", "BASH_ENV", "PYTHONSTARTUP"):
        row = await finish(conn, shell_job(conn, max_attempts=3, argv=["env"], env={name: "/tmp/x"}))
        assert (row["state"], row["attempt"]) == ("dead", 1)
        assert row["errors"][0]["error"] == f"BadArgument: env: {name} may not be set by a job"


@pytest.mark.skipif(os.geteuid() != 0, reason="commands change user only under a root worker")
async def test_under_a_root_worker_commands_run_as_the_shell_user(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "id"))
    row = await finish(conn, shell_job(conn, argv=["id"]))
    assert row["result"]["stdout"].startswith("uid=65534(nobody) gid=65534")
    assert "groups=65534" in row["result"]["stdout"] and ",0(root)" not in row["result"]["stdout"]


@pytest.mark.skipif(os.geteuid() != 0, reason="commands change user only under a root worker")
async def test_a_commands_directory_is_entered_as_its_user_not_through_a_root_only_parent(
    start_worker: StartWorker, conn: Conn, settings: Settings, tmp_path: Path
) -> None:
    tmp_path.chmod(0o700)
    inner = tmp_path / "open"
    inner.mkdir(mode=0o755)
    await start_worker(allowing(settings, "pwd"))
    row = await finish(conn, shell_job(conn, argv=["pwd"], cwd=str(inner)))
    assert row["state"] == "dead"
    assert f"pgsched: cannot run 'pwd': cannot enter '{inner}'" in row["errors"][0]["error"]


async def test_a_failing_command_fails_the_attempt_with_its_status(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "/bin/sh -c *"))
    row = await finish(conn, shell_job(conn, command="echo oops >&2; exit 3", shell=True))
    assert row["state"] == "dead"
    assert row["errors"][0]["error"] == "ShellCommandFailed: command exited with status 3: oops"


async def test_a_job_ends_when_its_main_process_ends_and_its_background_children_die(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "sh -c *"))
    row = await finish(conn, shell_job(conn, argv=["sh", "-c", "sleep 15 & echo started $!"]), timeout=8)
    assert row["state"] == "succeeded"
    word, pid = row["result"]["stdout"].split()
    assert word == "started"
    await until(lambda: gone(int(pid)), timeout=5, message="the background child survived its job")


async def test_a_shell_timeout_kills_the_whole_process_group(
    start_worker: StartWorker, conn: Conn, settings: Settings, shared_dir: Path
) -> None:
    await start_worker(allowing(settings, "sh -c *"))
    pidfile = shared_dir / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    row = await finish(conn, shell_job(conn, argv=["sh", "-c", script], timeout=0.5))
    assert row["state"] == "dead"
    assert "timed out after 0.5s" in row["errors"][0]["error"]
    child = int(pidfile.read_text())
    await until(lambda: gone(child), timeout=5, message="the background child survived")


async def test_shell_output_is_captured_and_capped_by_the_worker_and_a_job_may_only_ask_for_less(
    start_worker: StartWorker, conn: Conn, settings: Settings
) -> None:
    await start_worker(allowing(settings, "/bin/sh -c *", shell_max_output_bytes=5000))
    big = "yes a | head -c 200000"
    default = await finish(conn, shell_job(conn, command=big, shell=True))
    assert (len(default["result"]["stdout"]), default["result"]["stdout_truncated"]) == (5000, True)
    less = await finish(conn, shell_job(conn, command=big, shell=True, max_output_bytes=1000))
    assert (len(less["result"]["stdout"]), less["result"]["stdout_truncated"]) == (1000, True)
    more = await finish(conn, shell_job(conn, max_attempts=3, command=big, shell=True, max_output_bytes=150_000_000))
    assert (more["state"], more["attempt"]) == ("dead", 1)
    assert "max_output_bytes: 150000000 is over this worker's cap of 5000 bytes" in more["errors"][0]["error"]
