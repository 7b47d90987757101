"""Cron arithmetic: fields, zones, DST in both directions, misfire policies (pure, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgsched.cron import MisfirePolicy, due_instants, parse_cron
from pgsched.errors import ValidationError


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_six_fields_read_seconds_first() -> None:
    spec = parse_cron("*/10 * * * * *")
    assert spec.preview(utc(2026, 1, 1, 0, 0, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 30),
    ]


@pytest.mark.parametrize(
    ("zone", "cron", "after", "expected"),
    [
        # New York springs forward 2026-03-08 02:00 -> 03:00: 02:30 does not exist and fires once at 03:00 EDT.
        ("America/New_York", "30 2 * * *", utc(2026, 3, 7, 12), [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
        # New York falls back 2026-11-01 02:00 -> 01:00: 01:30 happens twice and fires once (the first, EDT).
        ("America/New_York", "30 1 * * *", utc(2026, 10, 31, 12), [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
        # Berlin springs forward 2026-03-29 02:00 -> 03:00.
        ("Europe/Berlin", "15 2 * * *", utc(2026, 3, 28, 12), [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 15)]),
        # Berlin falls back 2026-10-25 03:00 -> 02:00: 02:15 fires once, at its first (CEST) occurrence.
        ("Europe/Berlin", "15 2 * * *", utc(2026, 10, 24, 12), [utc(2026, 10, 25, 0, 15), utc(2026, 10, 26, 1, 15)]),
        # An hourly schedule fires by elapsed time: both 01:00 (EDT and EST) in the repeated hour.
        ("America/New_York", "0 * * * *", utc(2026, 11, 1, 4, 30), [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6)]),
    ],
)
def test_dst_transitions_fire_the_documented_instants(
    zone: str, cron: str, after: datetime, expected: list[datetime]
) -> None:
    assert parse_cron(cron, zone).preview(after, len(expected)) == expected


@pytest.mark.parametrize(
    ("cron", "zone", "field"),
    [
        ("* * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("0 0 30 2 *", "UTC", "cron"),
        ("", "UTC", "cron"),
        ("* * * * *", "Mars/Olympus", "timezone"),
    ],
)
def test_bad_expressions_and_zones_name_the_field(cron: str, zone: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_cron(cron, zone)
    assert info.value.field == field


def test_an_on_time_instant_fires_whatever_the_policy() -> None:
    spec = parse_cron("* * * * * *")
    for policy in MisfirePolicy:
        fire, upcoming = due_instants(
            spec, utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 5, 50_000), policy=policy, grace=timedelta(hours=1)
        )
        assert (fire, upcoming) == ([utc(2026, 1, 1, 0, 0, 5)], utc(2026, 1, 1, 0, 0, 6))


def test_misfire_policies_after_a_ten_minute_outage() -> None:
    spec = parse_cron("* * * * *")  # every minute
    planned, now = utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 10, 30)
    grace = timedelta(minutes=5)
    skip, upcoming = due_instants(spec, planned, now, policy=MisfirePolicy.SKIP, grace=grace)
    once, _ = due_instants(spec, planned, now, policy=MisfirePolicy.ONCE, grace=grace)
    catch_up, _ = due_instants(spec, planned, now, policy=MisfirePolicy.CATCH_UP, grace=grace)
    assert skip == []
    assert upcoming == utc(2026, 1, 1, 0, 11)
    assert once == [utc(2026, 1, 1, 0, 10)]
    assert catch_up == [utc(2026, 1, 1, 0, m) for m in range(6, 11)]  # within the 5-minute grace


def test_a_valid_cron_is_parsed_once_per_process_and_bad_input_is_refused_every_time() -> None:
    """The leader parses each due schedule's cron at every fire (about 0.4 ms a parse): a valid pair is kept."""
    assert parse_cron("*/7 * * * *", "Asia/Tokyo") is parse_cron("*/7 * * * *", "Asia/Tokyo")
    for _ in range(2):
        with pytest.raises(ValidationError, match="invalid cron"):
            parse_cron("61 * * * *", "UTC")
        with pytest.raises(ValidationError, match="unknown time zone"):
            parse_cron("* * * * *", "Mars/Olympus")
    with pytest.raises(ValidationError, match="cron"):
        parse_cron(["* * * * *"], "UTC")  # not hashable, not a string: refused, not a TypeError
