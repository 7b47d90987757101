"""AuthFailureLimiter: a sliding window per client address, in a table of bounded size."""

from __future__ import annotations

from pgsched.api.throttle import AuthFailureLimiter


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_blocked_after_the_limit_until_its_oldest_failure_leaves_the_window() -> None:
    ticks = Ticks()
    limiter = AuthFailureLimiter(limit=3, window=60, monotonic=ticks)
    for _ in range(2):
        limiter.record_failure("10.0.0.1")
        ticks.now += 1
    assert limiter.retry_after("10.0.0.1") is None
    limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 58
    assert limiter.retry_after("10.0.0.2") is None
    ticks.now += 58
    assert limiter.retry_after("10.0.0.1") is None


def test_the_table_forgets_the_least_recent_clients_beyond_its_size() -> None:
    limiter = AuthFailureLimiter(limit=1, window=60, max_clients=100, monotonic=Ticks())
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.retry_after("10.0.3.231") == 60  # the newest is still blocked
    assert limiter.retry_after("10.0.0.0") is None  # the oldest was forgotten
