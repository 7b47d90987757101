"""``pgsched tokens create --expires-in``: a stored token with an expiry, shown by ``tokens list``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgsched.cli import cli
from pgsched.cli.base import run_cli


def _run(dsn: str, capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = run_cli(cli, ["--dsn", dsn, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tokens_create_with_expires_in_stores_the_expiry(dsn: str, capsys: Any, conn: psycopg.Connection[Any]) -> None:
    code, out, _ = _run(dsn, capsys, "tokens", "create", "--name", "ci", "--expires-in", "2h", "--json")
    created = json.loads(out)
    assert code == 0 and created["expires_at"] is not None
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(created["created_at"])
    assert timedelta(hours=2) - timedelta(seconds=5) <= lifetime <= timedelta(hours=2)
    listed = json.loads(_run(dsn, capsys, "tokens", "list", "--json")[1])
    assert listed[0]["expires_at"] == created["expires_at"]
    code, _, err = _run(dsn, capsys, "tokens", "create", "--name", "bad", "--expires-in", "soon")
    assert code == 2 and "expires-in" in err
    assert conn.execute("SELECT count(*) AS n FROM pgsched.api_tokens").fetchone()["n"] == 1
