"""pgsched.shell in real `pgsched worker` processes: commands cannot read the worker's secrets, and a job's
whole process tree, ``setsid`` escapes included, dies at its timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.worker.conftest import ROOT
from tests.worker.test_builtins import finish, gone, shared_dir, shell_job

__all__ = ["shared_dir"]  # a fixture used here

Conn = psycopg.Connection[dict[str, Any]]
SECRET = "pgsched_1_the-worker-secret-0123456789abcdef"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a worker as another user")


def _python_for(user: str, env: dict[str, str]) -> str | None:
    """An interpreter ``user`` can run that imports pgsched (the venv's may sit in root's home)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")):
        if candidate is None:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import pgsched.cli"], user=user, env=env, cwd=ROOT, check=False, capture_output=True
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


def run_worker(spawn_worker: Callable[..., subprocess.Popen[bytes]], *args: str, user: str | None = None) -> int:
    """Start a `pgsched worker` process (as ``user`` when given) with a secret in its environment; its pid."""
    env = {"PGSCHED_API_TOKEN": SECRET, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])}
    python = sys.executable if user is None else _python_for(user, {"PATH": "/usr/bin:/bin", **env})
    if python is None:
        pytest.skip(f"no Python that {user} can run imports pgsched")
    return spawn_worker(*args, env=env, user=user, python=python).pid


async def _environ_refused(conn: Conn, worker_pid: int) -> None:
    row = await finish(conn, shell_job(conn, argv=["cat", f"/proc/{worker_pid}/environ"]), timeout=30)
    assert row["state"] == "dead"
    assert row["errors"][0]["error"].endswith(f"cat: /proc/{worker_pid}/environ: Permission denied")
    assert SECRET not in str(row)


@root_only
async def test_a_command_under_a_root_worker_runs_as_nobody_and_cannot_read_the_workers_environment(
    spawn_worker: Callable[..., subprocess.Popen[bytes]], conn: Conn
) -> None:
    worker = run_worker(spawn_worker, "--allow-shell", "cat /proc/*/environ", "--allow-shell", "id -u")
    row = await finish(conn, shell_job(conn, argv=["id", "-u"]), timeout=30)
    assert row["result"]["stdout"] == "65534\n"
    await _environ_refused(conn, worker)


async def test_a_command_running_as_the_workers_own_user_cannot_read_its_environment(
    spawn_worker: Callable[..., subprocess.Popen[bytes]], conn: Conn
) -> None:
    user = "nobody" if os.geteuid() == 0 else None  # a worker that is not root: commands share its uid
    worker = run_worker(spawn_worker, "--allow-shell", "cat /proc/*/environ", "--allow-shell", "id -u", user=user)
    row = await finish(conn, shell_job(conn, argv=["id", "-u"]), timeout=30)
    assert row["result"]["stdout"] == f"{os.geteuid() if user is None else 65534}\n"
    await _environ_refused(conn, worker)


async def test_a_setsid_child_dies_at_the_jobs_timeout_and_does_not_hold_the_job(
    spawn_worker: Callable[..., subprocess.Popen[bytes]], conn: Conn, shared_dir: Path
) -> None:
    run_worker(spawn_worker, "--allow-shell", "sh -c *")
    pidfile = shared_dir / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' & wait"
    row = await finish(conn, shell_job(conn, argv=["sh", "-c", script], timeout=1), timeout=15)
    assert row["state"] == "dead"
    assert "timed out after 1s; its process tree was killed" in row["errors"][0]["error"]
    escaped = int(pidfile.read_text())
    assert gone(escaped), "the setsid child outlived its job"
