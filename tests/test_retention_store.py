"""RetentionStore: list, set and unset a queue's retention per final state, with the input rules of
pgsched.retention, and how far the time partitions of finished jobs reach against the longest retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgsched import db
from pgsched.errors import ValidationError
from pgsched.retention import HISTORY_MAX_AHEAD, MAX_KEEP_SECONDS, RetentionNotFound
from pgsched.retention_store import RetentionStore
from tests.support.factories import insert_jobs

DAY = 86400.0


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[RetentionStore]:
    pool = db.async_pool(dsn, "test", min_size=1, max_size=2)
    await pool.open()
    yield RetentionStore(pool)
    await pool.close()


async def test_a_queue_of_its_own_overrides_the_defaults_for_one_state_until_unset(store: RetentionStore) -> None:
    rule = await store.retention_set("audit", "succeeded", 90 * DAY)
    assert (rule.queue, str(rule.state), rule.keep_seconds, rule.source) == ("audit", "succeeded", 90 * DAY, "queue")
    assert rule.to_dict()["keep"] == "90d" and rule.to_dict()["keep_seconds"] == 7_776_000

    effective = {str(r.state): (r.keep_seconds, r.source) for r in await store.retention_list("audit")}
    assert effective == {
        "succeeded": (90 * DAY, "queue"),
        "dead": (30 * DAY, "default"),
        "cancelled": (7 * DAY, "default"),
    }
    everything = [(r.queue, str(r.state)) for r in await store.retention_list()]
    assert everything[:3] == [("*", "succeeded"), ("*", "dead"), ("*", "cancelled")]  # the defaults first
    assert everything[3:] == [("audit", "succeeded")]

    again = await store.retention_set("audit", "succeeded", 12 * 3600.0)  # a second set replaces it
    assert again.keep_seconds == 12 * 3600.0 and len(await store.retention_list()) == 4

    gone = await store.retention_unset("audit", "succeeded")
    assert gone.keep_seconds == 12 * 3600.0
    assert [r.source for r in await store.retention_list("audit")] == ["default"] * 3
    with pytest.raises(RetentionNotFound, match="no retention of its own"):
        await store.retention_unset("audit", "succeeded")


@pytest.mark.parametrize(
    ("queue", "state", "keep", "field"),
    [
        ("Audit", "succeeded", DAY, "queue"),
        ("a" * 64, "succeeded", DAY, "queue"),
        ("*", "succeeded", DAY, "queue"),  # the leader's defaults
        ("audit", "queued", DAY, "state"),
        ("audit", "bogus", DAY, "state"),
        ("audit", "succeeded", 0, "keep_seconds"),
        ("audit", "succeeded", 0.5, "keep_seconds"),
        ("audit", "succeeded", -DAY, "keep_seconds"),
        ("audit", "succeeded", MAX_KEEP_SECONDS + 1, "keep_seconds"),
        ("audit", "succeeded", float("inf"), "keep_seconds"),
        ("audit", "succeeded", True, "keep_seconds"),
        ("audit", "succeeded", "90d", "keep_seconds"),
    ],
)
async def test_bad_input_is_refused_naming_its_field_and_nothing_is_written(
    store: RetentionStore, conn: psycopg.Connection[Any], queue: str, state: str, keep: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await store.retention_set(queue, state, keep)
    assert caught.value.field == field
    assert conn.execute("SELECT count(*) AS n FROM pgsched.retention WHERE queue <> '*'").fetchone() == {"n": 0}


async def test_setting_the_defaults_row_is_refused_naming_the_settings_the_leader_writes_it_from(
    store: RetentionStore,
) -> None:
    for act in (store.retention_set("*", "dead", DAY), store.retention_unset("*", "dead")):
        with pytest.raises(ValidationError, match="PGSCHED_RETENTION_DEAD_SECONDS"):
            await act


async def test_the_longest_bound_is_ten_years_and_is_accepted(store: RetentionStore) -> None:
    rule = await store.retention_set("archive", "dead", MAX_KEEP_SECONDS)
    assert rule.keep_seconds == MAX_KEEP_SECONDS


async def test_a_change_applies_to_jobs_that_finish_afterwards_only(
    store: RetentionStore, conn: psycopg.Connection[Any]
) -> None:
    before, after = insert_jobs(conn, 1, queue="audit")[0], insert_jobs(conn, 1, queue="audit")[0]
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [before])
    await store.retention_set("audit", "succeeded", 90 * DAY)
    conn.execute("UPDATE pgsched.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", [after])
    rows = conn.execute("SELECT id, purge_at - finished_at AS kept FROM pgsched.jobs").fetchall()
    kept = {r["id"]: r["kept"] for r in rows}
    assert kept == {before: timedelta(days=1), after: timedelta(days=90)}


async def test_the_horizon_names_a_retention_beyond_the_partitions_the_leader_keeps_ahead(
    store: RetentionStore,
) -> None:
    horizon = await store.history_horizon_get()
    assert horizon.width_seconds is None and horizon.partitions_ahead == 0  # no leader round yet
    assert (horizon.longest_queue, horizon.longest_state, horizon.longest_keep_seconds) == ("*", "dead", 30 * DAY)
    assert horizon.warning(horizon.longest_keep_seconds, DAY) is None

    await store.retention_set("audit", "succeeded", 3650 * DAY)
    horizon = await store.history_horizon_get()
    assert (horizon.longest_queue, horizon.longest_keep_seconds) == ("audit", 3650 * DAY)
    warning = horizon.warning(horizon.longest_keep_seconds, DAY)
    assert warning is not None
    assert f"at most {HISTORY_MAX_AHEAD}" in warning and "jobs_done_default" in warning
    assert "PGSCHED_HISTORY_PARTITION_SECONDS to at least 792362" in warning  # ceil(3650 d / 398) seconds
    assert horizon.warning(3650 * DAY, 792362.0) is None  # wide enough partitions cover it
