"""``pgsched retention list|set|unset``: a queue's retention per final state from the shell, bad input as one
line and exit 2, and ``pgsched doctor`` naming a retention beyond the time partitions the leader keeps ahead."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pgsched.cli import cli
from pgsched.cli.base import run_cli


def _run(dsn: str, capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = run_cli(cli, ["--dsn", dsn, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _own_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT queue, state::text AS state, extract(epoch FROM keep)::float8 AS seconds FROM pgsched.retention r"
        " WHERE queue <> '*' ORDER BY queue, r.state"
    ).fetchall()


def test_set_list_and_unset_a_queues_retention(dsn: str, capsys: Any, conn: psycopg.Connection[Any]) -> None:
    for state, duration in (("succeeded", "90d"), ("dead", "12h"), ("cancelled", "30m")):
        code, out, err = _run(dsn, capsys, "retention", "set", "audit", state, duration)
        assert code == 0 and err == "" and "from now on" in out
    code, out, _ = _run(dsn, capsys, "retention", "set", "billing", "succeeded", "3600")  # plain seconds
    assert code == 0 and out.startswith("billing succeeded: kept 1h")
    assert _own_rows(conn) == [
        {"queue": "audit", "state": "succeeded", "seconds": 90 * 86400.0},
        {"queue": "audit", "state": "dead", "seconds": 12 * 3600.0},
        {"queue": "audit", "state": "cancelled", "seconds": 1800.0},
        {"queue": "billing", "state": "succeeded", "seconds": 3600.0},
    ]

    code, out, _ = _run(dsn, capsys, "retention", "list", "--queue", "billing", "--json")
    assert code == 0
    assert [(r["state"], r["keep"], r["source"]) for r in json.loads(out)] == [
        ("succeeded", "1h", "queue"),
        ("dead", "30d", "default"),
        ("cancelled", "7d", "default"),
    ]
    code, out, _ = _run(dsn, capsys, "retention", "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["QUEUE", "STATE", "KEEP"] and "audit" in out

    code, out, _ = _run(dsn, capsys, "retention", "unset", "billing", "succeeded")
    assert code == 0 and "back to the default (was 1h)" in out
    assert [r["queue"] for r in _own_rows(conn)] == ["audit"] * 3


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("set", "Audit", "succeeded", "1d"), "queue"),
        (("set", "*", "succeeded", "1d"), "PGSCHED_RETENTION_SUCCEEDED_SECONDS"),
        (("set", "audit", "queued", "1d"), "state"),
        (("set", "audit", "succeeded", "soon"), "duration"),
        (("set", "audit", "succeeded", "0s"), "keep_seconds"),
        (("set", "audit", "succeeded", "3661d"), "keep_seconds"),
        (("set", "audit", "succeeded", "99999999999999d"), "duration"),
        (("unset", "audit", "succeeded"), "no retention of its own"),
        (("unset", "*", "dead"), "PGSCHED_RETENTION_DEAD_SECONDS"),
        (("list", "--queue", "no queue"), "queue"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(
    dsn: str, capsys: Any, conn: psycopg.Connection[Any], argv: tuple[str, ...], named: str
) -> None:
    code, out, err = _run(dsn, capsys, "retention", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and named in err
    assert _own_rows(conn) == []


def test_a_retention_beyond_the_partitions_ahead_is_set_with_a_warning_and_doctor_names_it(
    dsn: str, capsys: Any
) -> None:
    code, out, _ = _run(dsn, capsys, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert (
        code == 0
        and checks["retention"]["status"] == "ok"
        and "needs 32 time partitions of 1d" in checks["retention"]["detail"]
    )

    code, out, err = _run(dsn, capsys, "retention", "set", "audit", "succeeded", "3650d")
    assert code == 0 and "kept 3650d" in out
    assert (
        err.startswith("Warning: a retention of 3650d needs 3652 time partitions of 1d ahead") and "at most 400" in err
    )

    code, out, _ = _run(dsn, capsys, "doctor", "--json")
    check = {c["name"]: c for c in json.loads(out)}["retention"]
    assert code == 0 and check["status"] == "warn"
    assert check["detail"].startswith("longest retention audit succeeded (3650d)")
    assert "PGSCHED_HISTORY_PARTITION_SECONDS" in check["detail"]
