"""The operator CLI through click (``run_cli``) and as real subprocesses: tables, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.config import Settings
from pgsched.migrate import Migrator
from tests.api.conftest import serve_api
from tests.support.factories import insert_jobs, register_tasks


def _run(dsn: str, capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = run_cli(cli, ["--dsn", dsn, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pgsched(dsn: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGSCHED_DSN": dsn}
    return subprocess.run(
        [sys.executable, "-m", "pgsched", *argv], env=env, capture_output=True, text=True, input=stdin, timeout=120
    )


def test_jobs_list_shows_a_table_and_json(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    ids = insert_jobs(conn, 3, task="report", queue="reports")
    code, out, _ = _run(dsn, capsys, "jobs", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["ID", "STATE", "QUEUE", "TASK"] and len(lines) == 4
    code, out, _ = _run(dsn, capsys, "jobs", "list", "--json", "--limit", "2")
    data = json.loads(out)
    assert [j["id"] for j in data["items"]] == sorted(ids, reverse=True)[:2] and data["next_before"] == ids[1]
    code, out, _ = _run(dsn, capsys, "jobs", "list", "--json", "--before", str(ids[1]))
    assert [j["id"] for j in json.loads(out)["items"]] == [ids[0]]


def test_jobs_show_cancel_and_retry(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    [job_id] = insert_jobs(conn, 1, task="t")
    code, out, _ = _run(dsn, capsys, "jobs", "show", str(job_id), "--json")
    assert code == 0 and json.loads(out)["id"] == job_id
    assert _run(dsn, capsys, "jobs", "cancel", str(job_id))[1].strip() == f"job {job_id}: cancelled"
    assert _run(dsn, capsys, "jobs", "retry", str(job_id))[1].strip() == f"job {job_id}: queued"
    assert conn.execute("SELECT state::text FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()["state"] == "queued"


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "show", "424242"],
        ["jobs", "show", "abc"],
        ["jobs", "show", "99999999999999999999999"],
        ["jobs", "cancel", "424242"],
        ["jobs", "list", "--state", "sleeping"],
        ["jobs", "list", "--queue", "Bad Queue"],
        ["jobs", "list", "--limit", "0"],
        ["dead", "retry"],
        ["tokens", "create", "--name", "x", "--scope", "root"],
        ["tokens", "create", "--name", "bad name"],
        ["tokens", "revoke", "777"],
        ["enqueue"],
    ],
)
def test_bad_input_exits_2_with_one_line(dsn: str, capsys: Any, argv: list[str]) -> None:
    code, _, err = _run(dsn, capsys, *argv)
    assert code == 2, err
    assert err.strip().startswith("Error") and "\n" not in err.strip()


def test_dead_list_retry_and_purge(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    dead = insert_jobs(conn, 3, task="x", state="dead", attempt=5, finished_at="2020-01-01T00:00:00+00:00")
    code, out, _ = _run(dsn, capsys, "dead", "list", "--json")
    assert code == 0 and sorted(j["id"] for j in json.loads(out)["items"]) == dead
    assert _run(dsn, capsys, "dead", "retry", str(dead[0]))[1].strip() == "retried 1 job(s)"
    assert _run(dsn, capsys, "dead", "purge", "--older-than", "1d", "--yes")[1].strip() == "purged 2 job(s)"
    assert _run(dsn, capsys, "dead", "list")[1].strip() == "(no jobs)"


def test_queues_and_workers_print_tables_and_json(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    insert_jobs(conn, 2, queue="emails")
    code, out, _ = _run(dsn, capsys, "queues")
    assert code == 0 and "emails" in out and out.splitlines()[0].startswith("QUEUE")
    assert json.loads(_run(dsn, capsys, "queues", "--json")[1])[0]["due"] == 2
    assert _run(dsn, capsys, "workers")[1].strip() == "(no workers)"
    assert json.loads(_run(dsn, capsys, "workers", "--json")[1]) == []


def test_a_token_from_the_cli_works_against_the_api_until_revoked(dsn: str, capsys: Any) -> None:
    code, out, err = _run(dsn, capsys, "tokens", "create", "--name", "ci", "--scope", "write")
    assert code == 0 and "not shown again" in err
    token = out.strip()
    listed = json.loads(_run(dsn, capsys, "tokens", "list", "--json")[1])
    assert [t["name"] for t in listed] == ["ci"] and token not in json.dumps(listed)
    with serve_api(Settings(dsn=dsn)) as api:
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{api.url}/jobs", json={"task": "t"}, headers=headers).status_code == 201
        assert _run(dsn, capsys, "tokens", "revoke", str(listed[0]["id"]))[0] == 0
        assert httpx.get(f"{api.url}/jobs", headers=headers).status_code == 401


def test_enqueue_from_file_inserts_every_line_or_nothing(
    dsn: str, conn: psycopg.Connection[Any], capsys: Any, tmp_path: Path
) -> None:
    register_tasks(dsn, "bulk", "ok")
    good = tmp_path / "jobs.jsonl"
    good.write_text("\n".join(json.dumps({"task": "bulk", "args": {"i": i}}) for i in range(2500)) + "\n")
    code, out, _ = _run(dsn, capsys, "enqueue", "--from-file", str(good))
    assert code == 0 and out.strip() == "enqueued 2500 job(s)"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "ok"}\n{"task": "ok", "priority": "high"}\n')
    code, _, err = _run(dsn, capsys, "enqueue", "--from-file", str(bad))
    assert code == 2 and "line 2: priority" in err
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs").fetchone()["n"] == 2500


def test_subprocesses_enqueue_from_stdin_list_as_json_and_run_doctor(dsn: str) -> None:
    register_tasks(dsn, "piped")
    lines = "\n".join(json.dumps({"task": "piped", "run_key": f"k{i}"}) for i in range(3))
    out = _pgsched(dsn, "enqueue", "--from-file", "-", "--json", stdin=lines)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["ids"]) == 3
    listed = _pgsched(dsn, "jobs", "list", "--json")
    assert {j["task"] for j in json.loads(listed.stdout)["items"]} == {"piped"}
    bad = _pgsched(dsn, "jobs", "show", "999999")
    assert bad.returncode == 2 and bad.stderr.strip() == "Error: job 999999 does not exist"
    doctor = _pgsched(dsn, "doctor", "--json")
    checks = {c["name"]: c["status"] for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 0, doctor.stderr
    assert checks["database"] == "ok" and checks["migrations"] == "ok"
    assert checks["listener"] == "warn" and checks["leader"] == "warn"


def test_doctor_fails_on_pending_migrations_and_an_unreachable_redis(
    empty_dsn: str, capsys: Any, monkeypatch: Any
) -> None:
    Migrator(empty_dsn).migrate()
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        c.execute("DELETE FROM pgsched.migrations WHERE version = (SELECT max(version) FROM pgsched.migrations)")
    monkeypatch.setenv("PGSCHED_REDIS_URL", "redis://127.0.0.1:1/0")
    code, out, _ = _run(empty_dsn, capsys, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1
    assert checks["migrations"]["status"] == "fail" and "pending" in checks["migrations"]["detail"]
    assert checks["redis"]["status"] == "fail"
    monkeypatch.setenv("PGSCHED_REDIS_URL", "redis://127.0.0.1:6379/0")
    code, out, _ = _run(empty_dsn, capsys, "doctor")
    assert "redis" in out and out.splitlines()[0].split() == ["NAME", "STATUS", "DETAIL"]


def test_doctor_reports_an_unreachable_database_as_a_failure(capsys: Any) -> None:
    code, out, _ = _run("host=127.0.0.1 port=1 user=postgres dbname=none connect_timeout=2", capsys, "doctor", "--json")
    assert code == 1 and json.loads(out)[0]["name"] == "database" and json.loads(out)[0]["status"] == "fail"


def test_api_refuses_a_public_address_with_auth_off(dsn: str) -> None:
    env = {**os.environ, "PGSCHED_DSN": dsn, "PGSCHED_API_AUTH": "off"}
    out = subprocess.run(
        [sys.executable, "-m", "pgsched", "api", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "refusing" in out.stderr


def test_queues_pause_resume_and_set_limits(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    insert_jobs(conn, 1, queue="emails")
    assert _run(dsn, capsys, "queues", "pause", "emails")[1].strip() == "emails: PAUSED"
    code, out, _ = _run(dsn, capsys, "queues", "set", "emails", "--concurrency", "4", "--rate", "50/1m")
    assert code == 0 and out.strip() == "emails: PAUSED, concurrency 4, rate 50/60s"
    assert _run(dsn, capsys, "queues", "resume", "emails")[1].strip() == "emails: concurrency 4, rate 50/60s"
    table = _run(dsn, capsys, "queues")[1]
    assert "concurrency 4, rate 50/60s" in table
    listed = json.loads(_run(dsn, capsys, "queues", "--json")[1])[0]
    assert (listed["concurrency_limit"], listed["rate_limit"], listed["paused"]) == (4, 50, False)
    code, _, err = _run(dsn, capsys, "queues", "set", "emails", "--concurrency", "lots")
    assert code == 2 and "concurrency" in err
