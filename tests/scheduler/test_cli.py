"""`pgsched schedules ...` through click's runner, and `app.schedule` from Python."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgsched import Pgsched
from pgsched.cli import cli
from pgsched.cli.base import run_cli


def test_add_list_preview_pause_trigger_and_remove(dsn: str, conn: psycopg.Connection[Any], capsys: Any) -> None:
    assert (
        run_cli(cli, ["--dsn", dsn, "schedules", "add", "ny", "30 2 * * *", "report", "--timezone", "America/New_York"])
        == 0
    )
    assert "created ny" in capsys.readouterr().out
    assert run_cli(cli, ["--dsn", dsn, "schedules", "preview", "ny", "--count", "10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10
    for row in rows:  # each instant is 02:30 New York time (03:00 on a spring-forward day), shown in both zones
        local, utc = datetime.fromisoformat(row["local"]), datetime.fromisoformat(row["utc"])
        assert local == utc and utc.utcoffset() == timedelta(0)
        assert local.strftime("%H:%M") in {"02:30", "03:00"} and local.utcoffset() != timedelta(0)
    assert run_cli(cli, ["--dsn", dsn, "schedules", "pause", "ny"]) == 0
    assert run_cli(cli, ["--dsn", dsn, "schedules", "trigger", "ny"]) == 0
    job_id = int(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_cli(cli, ["--dsn", dsn, "schedules", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["enabled"]) == ("ny", False)
    row = conn.execute("SELECT schedule_name FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"schedule_name": "ny"}
    assert run_cli(cli, ["--dsn", dsn, "schedules", "remove", "ny"]) == 0
    assert conn.execute("SELECT count(*) AS n FROM pgsched.schedules").fetchone() == {"n": 0}


def test_bad_cron_zone_or_name_exit_2_with_one_line(dsn: str, capsys: Any) -> None:
    for argv in (
        ["schedules", "add", "x", "61 * * * *", "t"],
        ["schedules", "add", "x", "* * * * *", "t", "--timezone", "Mars/Olympus"],
        ["schedules", "show", "missing"],
        ["schedules", "preview", "* * *"],
    ):
        assert run_cli(cli, ["--dsn", dsn, *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: ") and "\n" not in err


def test_app_schedule_creates_and_replaces_by_name(app: Pgsched, conn: psycopg.Connection[Any]) -> None:
    first = app.schedule("nightly", "0 0 3 * * *", "backup", {"full": True}, timezone="Europe/Paris")
    second = app.schedule("nightly", "0 0 4 * * *", "backup", misfire_policy="skip")
    assert first.id == second.id
    row = conn.execute("SELECT cron, timezone, misfire_policy, args FROM pgsched.schedules").fetchone()
    assert row == {"cron": "0 0 4 * * *", "timezone": "UTC", "misfire_policy": "skip", "args": {}}


def test_an_upsert_never_moves_next_fire_back_to_an_instant_already_fired(
    app: Pgsched, conn: psycopg.Connection[Any]
) -> None:
    app.schedule("every-minute", "* * * * *", "t")
    conn.execute("UPDATE pgsched.schedules SET last_fired_at = now() + interval '1 hour'")  # as if fired ahead
    again = app.schedule("every-minute", "* * * * *", "t")
    fired = conn.execute("SELECT last_fired_at FROM pgsched.schedules").fetchone()["last_fired_at"]
    assert again.next_fire_at is not None and fired < again.next_fire_at <= fired + timedelta(minutes=1)


def test_schedules_add_and_resume_always_print_the_next_fire_time(
    dsn: str, conn: psycopg.Connection[Any], capsys: Any
) -> None:
    assert run_cli(cli, ["--dsn", dsn, "schedules", "add", "tick", "* * * * *", "t"]) == 0
    conn.execute("UPDATE pgsched.schedules SET last_fired_at = date_trunc('minute', now()) + interval '2 hours'")
    capsys.readouterr()
    for argv in (
        ["schedules", "add", "tick", "* * * * *", "t"],
        ["schedules", "pause", "tick"],
        ["schedules", "resume", "tick"],
    ):
        assert run_cli(cli, ["--dsn", dsn, *argv]) == 0
    out = capsys.readouterr().out
    assert "None" not in out
    stored = conn.execute("SELECT next_fire_at, last_fired_at FROM pgsched.schedules").fetchone()
    assert stored["next_fire_at"] == stored["last_fired_at"] + timedelta(minutes=1)
    assert out.count(f"next fire {stored['next_fire_at']}") == 2
