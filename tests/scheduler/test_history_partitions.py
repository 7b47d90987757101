"""Finished jobs live in time partitions of pgsched.jobs_done (by purge_at = finished_at + the retention of their
queue and state); the leader creates the partitions ahead and drops whole ones once passed."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched import Settings
from pgsched.maintenance import Pruner
from pgsched.queries import query
from tests.support.factories import insert_jobs
from tests.support.waiting import wait_until

MINUTE = 60.0


def _pruner(dsn: str) -> Pruner:
    return Pruner(
        Settings(
            dsn=dsn,
            retention_succeeded_seconds=2 * MINUTE,
            retention_cancelled_seconds=2 * MINUTE,
            retention_dead_seconds=2 * MINUTE,
            history_partition_seconds=MINUTE,
        )
    )


async def _prune(dsn: str, now: datetime) -> None:
    """A leader round, then the slices of partition work it left (a round stops after about 0.5 s of DDL)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
        pruner = _pruner(dsn)
        await pruner.prune(leader, now=now)
        while pruner.history_behind:  # what the leader's loop does between rounds
            await pruner.history_maintain(leader, now=now)


def _db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def _partitions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT name, purge_from, purge_to FROM pgsched.history_partitions ORDER BY purge_from"
    ).fetchall()


def _where(conn: psycopg.Connection[Any], ids: list[int]) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT tableoid::regclass::text AS part FROM pgsched.jobs WHERE id = ANY(%s)", [ids]
    ).fetchall()
    return {r["part"] for r in rows}


def test_a_job_that_ends_gets_the_retention_of_its_queue_and_state(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO pgsched.retention (queue, state, keep) VALUES ('audit', 'succeeded', '90 days')")
    audit = insert_jobs(conn, 1, queue="audit")[0]
    plain = insert_jobs(conn, 1)[0]
    dead = insert_jobs(conn, 1)[0]
    conn.execute(
        "UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id IN (%s, %s)", [audit, plain]
    )
    conn.execute("UPDATE pgsched.jobs SET state = 'dead', finished_at = now() WHERE id = %s", [dead])
    kept = {
        r["id"]: r["kept"]
        for r in conn.execute("SELECT id, purge_at - finished_at AS kept FROM pgsched.jobs").fetchall()
    }
    assert kept == {audit: timedelta(days=90), plain: timedelta(days=1), dead: timedelta(days=30)}
    conn.execute("SELECT pgsched.retry(%s)", [dead])  # back in play: no purge_at
    row = conn.execute("SELECT state::text AS state, purge_at FROM pgsched.jobs WHERE id = %s", [dead]).fetchone()
    assert row == {"state": "queued", "purge_at": None}


async def test_the_leader_creates_partitions_ahead_and_drops_passed_ones_whole(
    dsn: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgsched.maintenance")  # its log line once broke the leader
    now = _db_now(conn)
    await _prune(dsn, now)
    ahead = _partitions(conn)
    assert ahead and ahead[0]["purge_from"] <= now and ahead[-1]["purge_to"] >= now + timedelta(minutes=3)
    live = insert_jobs(conn, 5)
    ended = insert_jobs(conn, 20)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(%s)", [ended])
    assert len(_where(conn, ended)) == 1 and not _where(conn, ended) & {"pgsched.jobs_done_default"}

    await _prune(dsn, now + timedelta(minutes=1))  # not yet past their retention
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [ended]).fetchone() == {"n": 20}

    later = now + timedelta(minutes=5)
    await _prune(dsn, later)
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [ended]).fetchone() == {"n": 0}
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [live]).fetchone() == {"n": 5}
    remaining = _partitions(conn)
    assert remaining and all(p["purge_to"] > later for p in remaining)  # passed ones dropped, new ones ahead
    logged = [r for r in caplog.records if getattr(r, "event", None) == "history_partitions"]
    assert logged and any(getattr(r, "partitions_dropped", 0) for r in logged)


async def test_finished_rows_in_the_default_partition_move_into_the_partition_created_for_them(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("UPDATE pgsched.retention SET keep = interval '2 minutes'")  # as the leader will
    ended = insert_jobs(conn, 10)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(%s)", [ended])
    assert _where(conn, ended) == {"pgsched.jobs_done_default"}  # no partition yet
    await _prune(dsn, _db_now(conn))
    assert len(_where(conn, ended)) == 1 and not _where(conn, ended) & {"pgsched.jobs_done_default"}


async def test_finished_jobs_without_purge_at_are_deleted_from_the_default_partition_past_their_retention(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    old = insert_jobs(conn, 3, state="succeeded", finished_at=datetime.now().astimezone() - timedelta(hours=1))
    fresh = insert_jobs(conn, 2, state="succeeded", finished_at=datetime.now().astimezone())
    assert _where(conn, old + fresh) == {"pgsched.jobs_done_default"}
    await _prune(dsn, _db_now(conn))
    left = conn.execute("SELECT id FROM pgsched.jobs WHERE id = ANY(%s) ORDER BY id", [old + fresh]).fetchall()
    assert [r["id"] for r in left] == fresh


async def test_a_partition_whose_lock_is_busy_is_dropped_next_round_without_waiting(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    now = _db_now(conn)
    await _prune(dsn, now)
    ended = insert_jobs(conn, 3)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(%s)", [ended])
    with psycopg.connect(dsn) as reader:
        reader.execute("SELECT count(*) FROM pgsched.jobs WHERE state = 'succeeded'")  # holds a lock on jobs_done
        await _prune(dsn, now + timedelta(minutes=5))  # returns at once: lock_timeout
        assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [ended]).fetchone() == {"n": 3}
    await _prune(dsn, now + timedelta(minutes=5))
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [ended]).fetchone() == {"n": 0}


def test_the_finish_sets_purge_at_from_the_retention_of_the_queue_and_the_final_state(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("INSERT INTO pgsched.retention (queue, state, keep) VALUES ('audit', 'succeeded', '90 days')")
    conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (3, 'test', 3)")
    audit = insert_jobs(conn, 1, queue="audit", state="running", attempt=1, worker_id=3, lease=1)[0]
    dead = insert_jobs(conn, 1, state="running", attempt=1, max_attempts=1, worker_id=3, lease=2)[0]
    again = insert_jobs(conn, 1, state="running", attempt=1, max_attempts=3, worker_id=3, lease=3)[0]
    conn.execute(
        query("job_finish_many"),
        {
            "ids": [audit, dead, again],
            "leases": [1, 2, 3],
            "outcomes": ["succeeded", "failed", "failed"],
            "results": ["1", None, None],
            "errors": [None, '{"error": "x"}', '{"error": "y"}'],
            "delays": [0.0, 0.0, 5.0],
            "finals": [False, False, False],
            "snooze_limits": [0, 0, 0],
            "now": None,
        },
    )
    rows = {
        r["id"]: (r["state"], r["kept"])
        for r in conn.execute(
            "SELECT id, state::text AS state, purge_at - finished_at AS kept FROM pgsched.jobs WHERE id = ANY(%s)",
            [[audit, dead, again]],
        ).fetchall()
    }
    assert rows == {
        audit: ("succeeded", timedelta(days=90)),
        dead: ("dead", timedelta(days=30)),
        again: ("queued", None),
    }


async def test_the_leader_creates_each_partition_in_a_transaction_of_its_own(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    # A create holds an ACCESS EXCLUSIVE lock on the default partition, which every statement on pgsched.jobs needs,
    # until its transaction ends: one transaction for a whole round stalled the hot path for all of them.
    pruner = Pruner(
        Settings(dsn=dsn, retention_succeeded_seconds=2 * MINUTE, retention_cancelled_seconds=2 * MINUTE,
                 retention_dead_seconds=20 * MINUTE, history_partition_seconds=MINUTE)
    )  # fmt: skip
    # The top-level transaction of every CREATE TABLE (txid_current() is the same in a subtransaction).
    conn.execute("CREATE TABLE public.created_in (xid bigint)")
    conn.execute(
        "CREATE FUNCTION public.note_created() RETURNS event_trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO public.created_in VALUES (txid_current()); END$$"
    )
    conn.execute("CREATE EVENT TRIGGER note_created ON ddl_command_end WHEN TAG IN ('CREATE TABLE')"
                 " EXECUTE FUNCTION public.note_created()")  # fmt: skip
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as leader:
            await pruner.prune(leader, now=_db_now(conn))
            while pruner.history_behind:  # what the leader's loop does between rounds
                await pruner.history_maintain(leader, now=_db_now(conn))
    finally:
        conn.execute("DROP EVENT TRIGGER note_created")
    # Counted from the creates, not from the partitions left: a round that crosses a minute boundary also drops the
    # oldest one, now past.
    made = conn.execute("SELECT count(*) AS n, count(DISTINCT xid) AS transactions FROM public.created_in").fetchone()
    assert made is not None and made["n"] >= 20
    assert made["transactions"] == made["n"]


def test_the_finish_takes_each_state_s_retention_from_queue_star_when_the_queue_sets_only_others(
    conn: psycopg.Connection[Any],
) -> None:
    """The queue's row wins per state, not per queue; a calendar keep (months) is kept exact whatever IntervalStyle."""
    conn.execute(
        "INSERT INTO pgsched.retention (queue, state, keep)"
        " VALUES ('audit', 'dead', '90 days'), ('monthly', 'succeeded', '1 mon 2 days 03:00:00.5')"
    )
    conn.execute("SET IntervalStyle = 'iso_8601'")
    conn.execute("INSERT INTO pgsched.workers (id, host, pid) OVERRIDING SYSTEM VALUE VALUES (3, 'test', 3)")
    audit = insert_jobs(conn, 1, queue="audit", state="running", attempt=1, worker_id=3, lease=1)[0]
    monthly = insert_jobs(conn, 1, queue="monthly", state="running", attempt=1, worker_id=3, lease=2)[0]
    conn.execute(
        query("job_finish_many"),
        {
            "ids": [audit, monthly],
            "leases": [1, 2],
            "outcomes": ["succeeded", "succeeded"],
            "results": ["1", "2"],
            "errors": [None, None],
            "delays": [0.0, 0.0],
            "finals": [False, False],
            "snooze_limits": [0, 0],
            "now": None,
        },
    )
    rows = conn.execute(
        "SELECT id, purge_at = finished_at + interval '1 day' AS day,"
        " purge_at = finished_at + interval '1 mon 2 days 03:00:00.5' AS month"
        " FROM pgsched.jobs WHERE id = ANY(%s) ORDER BY id",
        [[audit, monthly]],
    ).fetchall()
    assert [(r["id"], r["day"], r["month"]) for r in rows] == [(audit, True, False), (monthly, False, True)]


def test_history_maintain_in_sql_does_what_the_leader_s_steps_do(conn: psycopg.Connection[Any]) -> None:
    """pgsched.history_maintain repeats pgsched.history_maintain_step (migration 0032): with a retention of 3
    minutes and 1-minute partitions it creates them up to 4 minutes ahead, a second call finds nothing to do, and
    once their range has passed it drops them whole, creating the ones ahead of the later instant."""
    conn.execute("UPDATE pgsched.retention SET keep = interval '3 minutes' WHERE queue = '*'")
    now = _db_now(conn)

    def maintain(at: datetime) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM pgsched.history_maintain(interval '1 minute', %s)", [at]).fetchone()
        assert row is not None
        return row

    first = maintain(now)
    made = _partitions(conn)
    assert first == {"created": len(made), "dropped": 0, "busy": 0}
    assert 4 <= len(made) <= 5  # from the current minute to the last purge_at a job finishing now can get
    assert made[0]["purge_from"] <= now < made[-1]["purge_to"]
    assert made[-1]["purge_to"] >= now + timedelta(minutes=4)
    assert maintain(now) == {"created": 0, "dropped": 0, "busy": 0}
    ended = insert_jobs(conn, 2)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(%s)", [ended])
    assert _where(conn, ended) <= {f"pgsched.{p['name']}" for p in made}
    later = now + timedelta(minutes=30)
    second = maintain(later)
    assert second["dropped"] == len(made) and second["busy"] == 0
    assert not {p["name"] for p in made} & {p["name"] for p in _partitions(conn)}
    assert second["created"] == len(_partitions(conn)) >= 4
    assert conn.execute("SELECT count(*) AS n FROM pgsched.jobs WHERE id = ANY(%s)", [ended]).fetchone() == {"n": 0}


def _inherits_scans(conn: psycopg.Connection[Any]) -> int:
    """Scans of pg_inherits counted by this backend and not yet flushed to the cumulative statistics (each read of
    pgsched.history_partitions is one); nothing is flushed inside a transaction block."""
    row = conn.execute(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS n FROM pg_stat_xact_sys_tables"
        " WHERE relid = 'pg_catalog.pg_inherits'::regclass"
    ).fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("ahead_minutes", [3, 60])
def test_a_history_step_reads_the_partition_list_once_however_many_lie_ahead(
    conn: psycopg.Connection[Any], ahead_minutes: int
) -> None:
    """A step that finds every partition in place reads the list once, and every step that creates one scans
    pg_inherits as often as the first did (its read, the create's check and the DDL's own): the same with 4 partitions
    ahead as with 61. Before migration 0049 each slot a step looked at read the list twice, so the leader's first
    creation of the partitions ahead was quadratic in their number, and each round at steady state linear."""
    conn.execute("UPDATE pgsched.retention SET keep = make_interval(mins => %s) WHERE queue = '*'", [ahead_minutes])
    now = _db_now(conn)
    creates: list[int] = []
    while True:
        # In one transaction: an idle backend flushes its pending counts (at most once a second), which would reset
        # them between the two reads when a step takes longer than that (a busy machine).
        with conn.transaction():
            before = _inherits_scans(conn)
            step = conn.execute(
                "SELECT created, dropped, busy, removed FROM pgsched.history_maintain_step(interval '1 minute', %s)",
                [now],
            ).fetchone()
            scans = _inherits_scans(conn) - before
        assert step is not None
        if not step["created"]:
            break
        creates.append(scans)
    assert len(creates) >= ahead_minutes + 1
    assert max(creates) == creates[0], f"scans of pg_inherits per create grew: {creates}"
    assert step == {"created": 0, "dropped": 0, "busy": 0, "removed": 0}
    assert scans == 1, f"a step with {len(creates)} partitions in place read the partition list {scans} times"


def test_a_history_step_ends_as_busy_while_another_session_maintains(conn: psycopg.Connection[Any], dsn: str) -> None:
    """One maintainer at a time (migration 0049): while another session holds the maintenance lock (a leader's step,
    or `pgsched migrate`'s), a step creates nothing and says busy; once it is free the step goes on."""
    conn.execute("UPDATE pgsched.retention SET keep = interval '3 minutes' WHERE queue = '*'")
    now = _db_now(conn)
    step = "SELECT created, busy FROM pgsched.history_maintain_step(interval '1 minute', %s)"
    with psycopg.connect(dsn) as other:
        other.execute("SELECT pg_advisory_xact_lock(pgsched.lock_namespace(), -2)")
        assert conn.execute(step, [now]).fetchone() == {"created": 0, "busy": 1}
        assert _partitions(conn) == []
    assert conn.execute(step, [now]).fetchone() == {"created": 1, "busy": 0}


def test_two_maintainers_at_once_make_each_partition_once(dsn: str) -> None:
    """A leader and `pgsched migrate` (or a lost leader finishing its round) maintaining the history at the same time:
    neither fails, and together they make every partition ahead once, none overlapping."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("UPDATE pgsched.retention SET keep = interval '40 minutes' WHERE queue = '*'")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def maintain() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                start.wait(10)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # what a leader's pass does: steps until one has nothing to do
                    row = c.execute(
                        "SELECT created, dropped, removed, busy"
                        " FROM pgsched.history_maintain_step(interval '1 minute', now())"
                    ).fetchone()
                    assert row is not None
                    created, dropped, removed, busy = row
                    if not (created or dropped or removed):
                        if not busy:
                            return
                        time.sleep(0.01)  # the other one maintains: look again, as the next round would
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=maintain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as c:
        made = _partitions(c)
        assert len(made) >= 41
        assert all(a["purge_to"] <= b["purge_from"] for a, b in itertools.pairwise(made))


def test_a_partition_created_while_jobs_finish_into_its_range_takes_them_along(
    conn: psycopg.Connection[Any], dsn: str
) -> None:
    """A job that finishes into the range of a partition being created (no partition for it yet: its row goes to the
    default partition) while the create runs: the create waits for it and takes its row along (migration 0049). The
    create used to move the default partition's rows first and lock it only for the ATTACH, which then failed on the
    row ("updated partition constraint for default partition would be violated"): a leader started beside running
    producers failed every round on the range jobs were finishing into."""
    start = _db_now(conn).replace(second=0, microsecond=0) + timedelta(minutes=30)
    finishing = psycopg.connect(dsn)
    try:
        late = insert_jobs(finishing, 1, state="succeeded", finished_at=start, purge_at=start + timedelta(seconds=5))
        outcome: list[Any] = []

        def create() -> None:
            try:
                with psycopg.connect(dsn, autocommit=True) as leader:
                    row = leader.execute(
                        "SELECT pgsched.history_partition_create(%s, %s)", [start, start + timedelta(minutes=1)]
                    ).fetchone()
                    outcome.append(row[0] if row else None)
            except psycopg.Error as exc:
                outcome.append(exc)

        creator = threading.Thread(target=create)
        creator.start()
        wait_until(  # the create waits on a lock behind the open finish
            lambda: conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%history_partition_create%%' AND datname = current_database()"
            ).fetchone()["n"],
            timeout=10,
            message="the create did not wait for the open finish",
        )
        finishing.commit()
        creator.join(30)
    finally:
        finishing.close()
    assert outcome == [True]
    assert _where(conn, late) == {f"pgsched.jobs_done_{start:%Y%m%d_%H%M%S}"}
