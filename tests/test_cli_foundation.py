"""`pgsched migrate` and `pgsched enqueue`, through click's runner and as a real subprocess."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from typing import Any

import click
import psycopg

from pgsched import Settings
from pgsched.cli import cli
from pgsched.cli.base import run_cli
from pgsched.errors import DatabaseUnavailable
from pgsched.maintenance import Pruner
from pgsched.service import run_services
from tests.support.factories import register_tasks


def test_migrate_then_plain_insert_shows_in_queue_stats(empty_dsn: str) -> None:
    env = {**os.environ, "PGSCHED_DSN": empty_dsn}
    out = subprocess.run([sys.executable, "-m", "pgsched", "migrate"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "applied 0001_create_schema.sql" in out.stdout
    again = subprocess.run([sys.executable, "-m", "pgsched", "migrate"], env=env, capture_output=True, text=True)
    assert again.stdout.strip() == "schema is up to date"
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        c.execute("INSERT INTO pgsched.jobs (task) VALUES ('x')")
        assert c.execute("SELECT queue, due FROM pgsched.queue_stats").fetchall() == [("default", 1)]


def test_enqueue_prints_the_id_and_bad_input_exits_2_with_one_line(
    dsn: str, conn: psycopg.Connection[dict[str, Any]], capsys: Any
) -> None:
    register_tasks(dsn, "hello")
    assert run_cli(cli, ["--dsn", dsn, "enqueue", "hello", "--args", '{"a": 1}', "--in", "5m"]) == 0
    job_id = int(capsys.readouterr().out.strip())
    row = conn.execute(
        "SELECT args, run_at > now() + interval '4 minutes' AS later FROM pgsched.jobs WHERE id = %s", [job_id]
    )
    assert row.fetchone() == {"args": {"a": 1}, "later": True}
    for argv in (
        ["enqueue", "hello", "--args", "[1,"],
        ["enqueue", "hello", "--queue", "Nope"],
        ["enqueue", "x", "--in", "soon"],
    ):
        assert run_cli(cli, ["--dsn", dsn, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: ") and "\n" not in err


def test_a_missing_dsn_is_a_usage_error(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PGSCHED_DSN", raising=False)
    assert run_cli(cli, ["enqueue", "x"]) == 2
    assert "PGSCHED_DSN" in capsys.readouterr().err


def _clear_of_a_boundary(width: int, margin: float = 60.0) -> None:
    """What follows must run within one time partition of ``width`` seconds (partitions start at multiples of it, from
    the epoch): a partition boundary passed mid-test makes the next step drop one and create one more, which is right,
    and not what the test counts. Near a boundary, wait until it has passed."""
    left = width - time.time() % width
    if left < margin:
        time.sleep(left + 1)


def test_migrate_creates_the_history_partitions_ahead_so_a_first_leader_makes_none(empty_dsn: str) -> None:
    """`pgsched migrate` creates the time partitions ahead for the configured retention (what a leader's first round
    would create beside the workers, by the retention it writes as a leader's round does); a leader's round then
    creates none, and migrating again has nothing to do."""
    hour = 3600
    _clear_of_a_boundary(hour)
    env = {
        **os.environ,
        "PGSCHED_DSN": empty_dsn,
        "PGSCHED_HISTORY_PARTITION_SECONDS": str(hour),
        "PGSCHED_RETENTION_SUCCEEDED_SECONDS": str(2 * hour),
        "PGSCHED_RETENTION_CANCELLED_SECONDS": str(2 * hour),
        "PGSCHED_RETENTION_DEAD_SECONDS": str(5 * hour),
    }
    out = subprocess.run([sys.executable, "-m", "pgsched", "migrate"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        ahead = c.execute(
            "SELECT count(*), min(purge_from) <= now(), max(purge_to) >= now() + interval '5 hours'"
            " FROM pgsched.history_partitions"
        ).fetchone()
        assert ahead is not None and 6 <= ahead[0] <= 7 and ahead[1] and ahead[2], ahead
        assert f"created {ahead[0]} history partitions ahead" in out.stdout.splitlines()
        settings = Settings(dsn=empty_dsn, history_partition_seconds=hour, retention_dead_seconds=5 * hour)

        async def leader_round() -> dict[str, int]:
            async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as leader:
                return await Pruner(settings).history_maintain(leader)

        assert asyncio.run(leader_round()) == {"created": 0, "dropped": 0, "busy": 0}
        again = subprocess.run([sys.executable, "-m", "pgsched", "migrate"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "schema is up to date"


def test_an_error_out_of_a_task_group_is_answered_as_its_first_error(capsys: Any) -> None:
    # A long-running command runs its services in a TaskGroup: what one of them raises reaches the CLI wrapped.
    @click.group()
    def group() -> None:
        pass

    @group.command("known")
    def known() -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [DatabaseUnavailable("the server went away")])

    @group.command("bug")
    def bug() -> None:
        raise ExceptionGroup("outer", [ExceptionGroup("inner", [RuntimeError("not the leader")])])

    assert run_cli(group, ["known"]) == 1
    assert capsys.readouterr().err.strip() == "Error: the server went away"
    assert run_cli(group, ["bug"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: RuntimeError: not the leader") and "\n" not in err, err


def test_the_cli_loads_the_api_only_for_the_commands_that_serve_it() -> None:
    """A worker (or any other command) starts without Starlette and uvicorn: about 0.1 s of CPU per process start,
    paid four times over when four workers start cold into a drain."""
    probe = (
        "import sys, pgsched.cli\n"
        "print(sorted(m for m in ('uvicorn', 'starlette', 'pgsched.api') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run(
        [sys.executable, "-m", "pgsched", "api", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--port" in help_text


def test_at_debug_a_service_bug_s_traceback_is_printed_once(capsys: Any) -> None:
    """The failing service logs its traceback (pgsched.service); the CLI's last resort, at DEBUG, prints a traceback
    only for an error no service logged."""

    class Failing:
        async def run(self) -> None:
            raise RuntimeError("out of order")

        def stop(self) -> None:
            pass

    @click.group()
    def group() -> None:
        pass

    @group.command("serve")
    def serve() -> None:
        asyncio.run(run_services([Failing()]))

    @group.command("bug")
    def bug() -> None:
        raise RuntimeError("not in a service")

    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    root.handlers = [logging.StreamHandler(sys.stderr)]  # the stream capsys captures
    root.setLevel(logging.DEBUG)
    try:
        assert run_cli(group, ["serve"]) == 1
        err = capsys.readouterr().err
        assert err.count("Traceback (most recent call last)") == 1, err
        assert "Error: RuntimeError: out of order" in err
        assert run_cli(group, ["bug"]) == 1
        err = capsys.readouterr().err
        assert err.count("Traceback (most recent call last)") == 1, err
    finally:
        root.handlers, root.level = handlers, level
