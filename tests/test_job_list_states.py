"""The lists of one state (pgsched.job_list, migration 0045) return what a plain read of pgsched.jobs returns, page
after page: dead and cancelled jobs through their partial indexes, running jobs from the running set, succeeded jobs
from the time partitions that hold one and jobs_done_default. The succeeded list skips a partition only when neither
jobs_finished_idx nor the leader's counts know a succeeded job in it: a job finished there by hand after the counts
were taken is listed at once (tests/api/test_view_plans.py counts the rows each list visits)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgsched.queries import query
from tests.support.plan_table import fill_history, load, set_limits

Conn = psycopg.Connection[Any]
PAGE = 50  # the API's default


def _listed(conn: Conn, state: str, queue: str | None = None) -> list[int]:
    """Every id job_list returns for ``state`` (and ``queue``), following the before_id cursor page after page."""
    ids: list[int] = []
    while True:
        rows = conn.execute(
            query("job_list"),
            {"state": state, "queue": queue, "task": None, "before_id": ids[-1] if ids else None, "limit": PAGE},
        ).fetchall()
        ids += [row[0] for row in rows]
        if len(rows) < PAGE:
            return ids


def _expected(conn: Conn, state: str, queue: str | None = None) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM pgsched.jobs WHERE state = %s::pgsched.job_state AND queue = coalesce(%s, queue)"
        " ORDER BY id DESC",
        (state, queue),
    ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def history(dsn: str) -> Iterator[Conn]:
    """plan_table's live jobs and history: day partitions of one finished state each, succeeded jobs (without purge_at)
    in jobs_done_default."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        set_limits(conn)
        load(conn, queued=1_000, running=300, finished=700)
        fill_history(conn, 6_000)
        yield conn


@pytest.mark.parametrize("state", ["succeeded", "dead", "cancelled", "running", "queued"])
def test_a_list_of_one_state_pages_through_every_job_of_it_newest_first(history: Conn, state: str) -> None:
    expected = _expected(history, state)
    assert len(expected) > PAGE  # more than one page
    assert _listed(history, state) == expected
    assert _listed(history, state, "rare") == _expected(history, state, "rare")


def _dead_partition(conn: Conn) -> tuple[str, Any]:
    """A time partition holding dead jobs only, and an instant its purge_at range covers."""
    row = conn.execute(
        "SELECT tableoid::regclass::text, purge_at FROM pgsched.jobs WHERE state = 'dead'"
        " AND tableoid <> 'pgsched.jobs_done_default'::regclass ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row is not None
    others = conn.execute(f"SELECT count(*) FILTER (WHERE state <> 'dead') FROM {row[0]}").fetchone()
    assert others == (0,)
    return row[0], row[1]


def _recount(conn: Conn) -> None:
    """The leader's counts of every partition, as its passes leave them."""
    conn.execute("UPDATE pgsched.history_count_watermark SET upto = now()")
    while conn.execute(query("history_count_recount"), {"now": None, "every": 3600}).fetchall():
        pass


def _finish_by_hand(conn: Conn, finished_at: Any, purge_at: Any) -> tuple[int, str]:
    """A succeeded job inserted straight into history, as hand-made SQL can: its id and partition."""
    row = conn.execute(
        "INSERT INTO pgsched.jobs (task, queue, state, attempt, finished_at, purge_at)"
        " VALUES ('noop', 'default', 'succeeded', 1, %s, %s) RETURNING id, tableoid::regclass::text",
        (finished_at, purge_at),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_succeeded_job_in_a_partition_counted_without_one_is_listed(history: Conn) -> None:
    _recount(history)
    part, purge_at = _dead_partition(history)
    assert not history.execute(
        "SELECT 1 FROM pgsched.history_counts WHERE part = %s::regclass AND state = 'succeeded'", (part,)
    ).fetchall()
    # Finished before the counts' watermark, into the partition counted with dead jobs only.
    job, into = _finish_by_hand(history, datetime.now(UTC) - timedelta(hours=1), purge_at)
    assert into == part
    assert job in _listed(history, "succeeded")
    assert _listed(history, "succeeded") == _expected(history, "succeeded")


def test_a_succeeded_job_without_a_finish_time_is_listed_once_counted(history: Conn) -> None:
    """jobs_finished_idx leaves out a job without finished_at (only hand-made SQL ends one so): its partition is read
    once the leader counted it (within RECOUNT_EVERY, or at once after the marks are deleted), and the default
    partition, where such a job lands without purge_at, is always read."""
    part, purge_at = _dead_partition(history)
    counted, into = _finish_by_hand(history, None, purge_at)
    assert into == part
    default, into = _finish_by_hand(history, None, None)
    assert into == "pgsched.jobs_done_default"
    assert default in _listed(history, "succeeded")
    _recount(history)
    assert counted in _listed(history, "succeeded")
    assert _listed(history, "succeeded") == _expected(history, "succeeded")


def _ended(conn: Conn, state: str, jobs: int) -> list[int]:
    """Jobs enqueued and ended in ``state`` (moved into a time partition, as a finish moves them)."""
    inserted = conn.execute(
        "INSERT INTO pgsched.jobs (task, queue) SELECT 'noop', 'default' FROM generate_series(1, %s) RETURNING id",
        (jobs,),
    )
    ids = [row[0] for row in inserted.fetchall()]
    conn.execute(
        "UPDATE pgsched.jobs SET state = %s::pgsched.job_state, finished_at = now() WHERE id = ANY(%s)", (state, ids)
    )
    return ids


def _partial_sizes(conn: Conn, job_id: int) -> dict[str, int]:
    """Bytes of the dead and cancelled indexes of the partition holding the job, by the state they hold."""
    rows = conn.execute(
        "SELECT substring(pg_get_expr(x.indpred, x.indrelid), '(dead|cancelled)'), pg_relation_size(x.indexrelid)"
        "  FROM pg_index x"
        " WHERE x.indrelid = (SELECT tableoid FROM pgsched.jobs WHERE id = %s)"
        "   AND pg_get_expr(x.indpred, x.indrelid) ~ 'state = ''(dead|cancelled)'''",
        (job_id,),
    ).fetchall()
    return dict(rows)


def test_finishing_succeeded_jobs_adds_nothing_to_the_indexes_of_dead_and_cancelled_jobs(dsn: str) -> None:
    """The hot path's finish moves a job into a time partition: a succeeded one enters neither partial index of the
    dead and cancelled lists (their pages stay as built), a dead one enters its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pgsched.history_maintain(interval '1 day', now())")
        first = _ended(conn, "succeeded", 1)[0]
        built = _partial_sizes(conn, first)
        assert set(built) == {"dead", "cancelled"}
        assert _ended(conn, "succeeded", 2_000)
        assert _partial_sizes(conn, first) == built
        dead = _partial_sizes(conn, _ended(conn, "dead", 2_000)[0])
        assert dead["dead"] > built["dead"]
        assert dead["cancelled"] == built["cancelled"]
