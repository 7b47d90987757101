"""The producer's prefetch: the work of 20 ms at the current rate, or of eight full claims (at most 250 ms) when claims
are slower."""

from __future__ import annotations

import pytest

from pgsched.worker.producer import prefetch_size


def test_fast_claims_hold_twenty_milliseconds_of_work() -> None:
    assert prefetch_size(5_000.0, 0.001, low=2, high=500) == 100


def test_slow_claims_hold_the_work_of_eight_of_them() -> None:
    # Four processes sharing two cores: a claim of ~90 jobs took ~10 ms, so 20 ms of work ran dry before the next one.
    assert prefetch_size(4_000.0, 0.010, low=2, high=500) == 320


@pytest.mark.parametrize(
    ("rate", "claim_seconds", "expected"),
    [
        (0.0, 0.0, 2),  # idle or just started: the floor
        (50.0, 0.050, 12),  # slow jobs and slow claims: a quarter of a second of them
        (20_000.0, 0.020, 500),  # capped by prefetch_max
        (20_000.0, 5.0, 500),  # one claim stuck behind a slow server never passes the cap
        (100.0, 5.0, 25),  # slow jobs after a stalled claim: a quarter of a second of them, not 40 s
    ],
)
def test_bounds(rate: float, claim_seconds: float, expected: int) -> None:
    assert prefetch_size(rate, claim_seconds, low=2, high=500) == expected


def test_no_prefetch_when_the_worker_asks_for_none() -> None:
    assert prefetch_size(10_000.0, 0.010, low=0, high=0) == 0
