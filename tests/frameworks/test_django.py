"""The example Django project against a real PostgreSQL: jobs commit with the view's transaction, and
``manage.py pgsched_worker`` runs them with the settings taken from DATABASES."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client
from psycopg.conninfo import conninfo_to_dict

from pgsched.contrib.django import database_dsn
from tests.frameworks.django_project import settings as example_settings
from tests.support.processes import spawn, stop
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]

if not django_settings.configured:
    django_settings.configure(**{k: getattr(example_settings, k) for k in dir(example_settings) if k.isupper()})
    django.setup()


@pytest.fixture
def django_db(dsn: str, conn: Conn) -> Iterator[str]:
    """Point Django's default database at this test's fresh database."""
    conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, shipped boolean DEFAULT false)")
    params = conninfo_to_dict(dsn)
    default = connections["default"]
    default.close()
    changes = {"NAME": params["dbname"], "HOST": params.get("host", ""), "PORT": str(params.get("port", ""))}
    default.settings_dict.update(changes)
    django_settings.DATABASES["default"].update(changes)
    yield dsn
    default.close()


def _rows(conn: Conn, sql: str) -> list[dict[str, Any]]:
    return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def test_a_job_enqueued_in_a_view_commits_with_its_transaction(django_db: str, conn: Conn) -> None:
    response = Client().post("/orders", {"item": "tea"})
    assert response.status_code == 201, response.content
    body = response.json()
    jobs = _rows(conn, "SELECT id, task, args, state FROM pgsched.jobs")
    assert jobs == [{"id": body["job"], "task": "ship_order", "args": {"order_id": body["order"]}, "state": "queued"}]


def test_a_view_that_fails_after_enqueueing_rolls_the_job_back(django_db: str, conn: Conn) -> None:
    assert Client().post("/orders", {"item": "tea", "reject": "1"}).status_code == 409
    assert _rows(conn, "SELECT id FROM orders") == [] and _rows(conn, "SELECT id FROM pgsched.jobs") == []


def test_the_dsn_comes_from_databases(django_db: str) -> None:
    params, expected = conninfo_to_dict(database_dsn()), conninfo_to_dict(django_db)
    assert (params["dbname"], str(params.get("port"))) == (expected["dbname"], str(expected.get("port")))


def test_manage_py_pgsched_worker_runs_the_job_with_django_available_to_the_task(django_db: str, conn: Conn) -> None:
    body = Client().post("/orders", {"item": "cake"}).json()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.frameworks.django_project.settings",
        "EXAMPLE_DATABASE_URL": django_db,
        "PGSCHED_HEARTBEAT_SECONDS": "0.5",
    }
    env.pop("PGSCHED_DSN", None)
    proc = spawn([sys.executable, "-m", "django", "pgsched_worker", "--no-scheduler", "--concurrency", "2"], env)
    try:
        wait_until(lambda: _rows(conn, "SELECT state FROM pgsched.jobs") == [{"state": "succeeded"}], timeout=30)
    finally:
        stop(proc)
    assert _rows(conn, "SELECT result FROM pgsched.jobs") == [{"result": f"order {body['order']} shipped"}]
    assert _rows(conn, "SELECT shipped FROM orders") == [{"shipped": True}]
