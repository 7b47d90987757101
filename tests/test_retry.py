"""The reconnect backoff every loop shares: full jitter under a doubling, capped ceiling."""

from __future__ import annotations

import random
import statistics

from pgsched.retry import Backoff


def test_the_ceiling_doubles_per_failure_up_to_the_cap_and_a_reset_starts_over() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        backoff.next()
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.ceiling() == 0.1


def test_delays_are_spread_over_the_whole_window_never_past_the_cap() -> None:
    backoff = Backoff(base=0.05, cap=2.0, rng=random.Random(7))
    for _ in range(10):
        backoff.next()  # at the cap from here on
    delays = [backoff.next() for _ in range(2000)]
    assert 0.0 <= min(delays) < 0.1 and 1.9 < max(delays) <= 2.0
    assert 0.9 < statistics.mean(delays) < 1.1  # uniform over [0, cap]: processes that failed together scatter


def test_two_processes_that_failed_together_retry_at_different_moments() -> None:
    first, second = Backoff(rng=random.Random(1)), Backoff(rng=random.Random(2))
    assert [first.next() for _ in range(5)] != [second.next() for _ in range(5)]
