"""Multi-host DSNs (``host=a,b port=p1,p2 target_session_attrs=read-write``): accepted, checked, and used.

libpq chooses the host; pgsched must neither assume one host nor accept a DSN that could land its
writes on a standby.
"""

from __future__ import annotations

import socket

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgsched import Pgsched, Settings, db
from pgsched.errors import ConfigurationError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again once this returns: connections are refused


def _two_hosts(dsn: str, **extra: str) -> str:
    """``dsn`` behind a dead first host: libpq tries it, is refused, and goes on to the real server."""
    params = conninfo_to_dict(dsn)
    host = str(params.pop("host", "127.0.0.1"))
    port = str(params.pop("port", 5432))
    return make_conninfo(**params, host=f"127.0.0.1,{host}", port=f"{_closed_port()},{port}", **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dsn",
    [
        "host=a,b port=5432,5433 dbname=x target_session_attrs=read-write",
        "host=a,b dbname=x target_session_attrs=primary",
        "postgresql://u@a:5432,b:5433/x?target_session_attrs=read-write",
        "host=a dbname=x",
        "postgresql://u@a/x",
        "not a dsn =",
    ],
)
def test_settings_accept_a_dsn_that_only_reaches_a_primary(dsn: str) -> None:
    assert Settings.from_env({"PGSCHED_DSN": dsn}).dsn == dsn


def test_settings_accept_target_session_attrs_from_the_libpq_environment() -> None:
    env = {"PGSCHED_DSN": "host=a,b dbname=x", "PGTARGETSESSIONATTRS": "read-write"}
    assert Settings.from_env(env).dsn == env["PGSCHED_DSN"]


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("host=a,b port=5432,5433 dbname=x", "lists 2 hosts"),
        ("postgresql://u@a:5432,b:5433,c:5434/x", "lists 3 hosts"),
        ("host=a,b dbname=x target_session_attrs=any", "lists 2 hosts"),
        ("host=a dbname=x target_session_attrs=standby", "has target_session_attrs=standby"),
        ("host=a,b dbname=x target_session_attrs=prefer-standby", "has target_session_attrs=prefer-standby"),
        ("host=a,b dbname=x target_session_attrs=read-only", "has target_session_attrs=read-only"),
    ],
)
def test_settings_refuse_a_dsn_that_could_send_writes_to_a_standby(dsn: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=f"PGSCHED_DSN {says}: add target_session_attrs=read-write"):
        Settings.from_env({"PGSCHED_DSN": dsn})


def test_settings_refuse_a_session_dsn_that_could_land_on_a_standby_and_leave_the_read_dsn_free() -> None:
    with pytest.raises(ConfigurationError, match="PGSCHED_SESSION_DSN lists 2 hosts: add target_session_attrs"):
        Settings.from_env({"PGSCHED_DSN": "host=a dbname=x", "PGSCHED_SESSION_DSN": "host=a,b dbname=x"})
    read = "host=r1,r2 dbname=x target_session_attrs=prefer-standby"
    assert Settings.from_env({"PGSCHED_DSN": "host=a dbname=x", "PGSCHED_READ_DSN": read}).read_dsn == read


def test_the_client_enqueues_through_the_second_host_when_the_first_refuses(dsn: str) -> None:
    multi = _two_hosts(dsn, target_session_attrs="read-write")
    app = Pgsched(settings=Settings.from_env({"PGSCHED_DSN": multi}))
    try:
        job_id = app.enqueue("noop", {})
        job = app.get_job(job_id)
        assert job is not None and job.id == job_id
    finally:
        app.close()


def test_a_direct_server_behind_a_dead_first_host_is_not_taken_for_a_pooler(dsn: str) -> None:
    """The pooler check compares the port of the host libpq chose, not the first one listed."""
    assert db.pooler_seen(_two_hosts(dsn, target_session_attrs="read-write")) is None


def test_the_dsn_keeps_its_own_connect_timeout_and_keepalives_and_pgsched_names_the_session() -> None:
    given = "host=a,b port=5432,5433 dbname=x target_session_attrs=read-write connect_timeout=3 keepalives_idle=4"
    params = conninfo_to_dict(db.conninfo(given, "worker"))
    assert params["connect_timeout"] == "3" and params["keepalives_idle"] == "4"
    assert params["keepalives_interval"] == "5" and params["host"] == "a,b" and params["port"] == "5432,5433"
    assert str(params["application_name"]).startswith("pgsched:worker:")
    assert conninfo_to_dict(db.conninfo("host=a dbname=x", "cli"))["connect_timeout"] == "10"


def test_the_testing_plugin_says_its_server_dsn_must_name_one_server() -> None:
    from pgsched.testing.plugin import _janitor

    with pytest.raises(pytest.UsageError, match="must name one server"):
        _janitor("host=a,b port=5432,5433 user=postgres", "x")
