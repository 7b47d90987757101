"""`pgsched dev` as a person runs it: embedded PostgreSQL, REST and SQL enqueue, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.processes import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(proc)
    return found


@pytest.mark.acceptance
@pytest.mark.slow
def test_dev_runs_everything_then_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"PGSCHED_DSN", "PGSCHED_API_TOKEN"}}
    log = (tmp_path / "dev.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched", "dev", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        output = wait_until(
            lambda: (text := (tmp_path / "dev.log").read_text()) and "Ctrl-C stops everything" in text and text,
            timeout=90,
            message="pgsched dev did not start",
        )
        token = re.search(r"token\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        dsn = re.search(r"psql '([^']+)'", output).group(1)  # type: ignore[union-attr]

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/jobs",
            data=json.dumps({"task": "add", "args": {"a": 2, "b": 40}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            rest_id = json.load(response)["id"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            sql_id = conn.execute(
                "INSERT INTO pgsched.jobs (task, args) VALUES ('hello', '{\"name\": \"psql\"}') RETURNING id"
            ).fetchone()[0]  # type: ignore[index]

            def results() -> dict[int, object]:
                rows = conn.execute(
                    "SELECT id, result FROM pgsched.jobs WHERE id = ANY(%s) AND state = 'succeeded'",
                    [[rest_id, sql_id]],
                ).fetchall()
                return {r[0]: r[1] for r in rows}

            done = wait_until(lambda: len(results()) == 2 and results(), timeout=30, message="jobs did not run")
        assert done == {rest_id: 42, sql_id: "hello, psql"}
        # The tour's names come from the env file the banner tells people to source.
        tour = subprocess.run(
            [
                "bash",
                "-c",
                f'source "$1" && psql "$PGSCHED_DSN" -Atc "SELECT 1" >/dev/null && pgsched jobs show {rest_id} --json',
                "-",
                str(data_dir / "env"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tour.returncode == 0, tour.stderr
        assert json.loads(tour.stdout)["result"] == 42
        assert postgres_processes(data_dir), "the embedded server should be running"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()[-3000:]
    assert "stopping: running jobs get up to 30 s to finish" in (tmp_path / "dev.log").read_text()
    deadline = time.monotonic() + 10
    while postgres_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert postgres_processes(data_dir) == [], "a postgres process was left behind"
