"""Retry policy of jobs, and the backoff of every reconnect loop: exponential, with jitter wide enough
to break cohorts. A leaf module: pure functions and one small counter, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after attempt ``n`` failed.

    The floor is ``base * 2**(n-1)``, capped at ``max_seconds``: a retry never comes earlier. On top,
    a decorrelating jitter draws the delay uniformly up to ``floor + jitter * (2 * floor + 4 * base)``
    (still capped, never below the floor). With the default ``jitter = 1`` a cohort that failed together
    spreads its first retry over six base units, its later ones over three times their floor, so 500
    jobs failing at once retry at a per-second rate within 3x of its mean instead of in waves.
    ``jitter = 0`` gives the bare exponential floor.
    """

    base_seconds: float = 1.0
    max_seconds: float = 3600.0
    jitter: float = 1.0

    def floor(self, attempt: int) -> float:
        """The earliest the next attempt may come."""
        exponent = max(attempt - 1, 0)
        return float(min(self.base_seconds * 2.0 ** min(exponent, 62), self.max_seconds))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        low = self.floor(attempt)
        high = min(low + max(self.jitter, 0.0) * (2 * low + 4 * self.base_seconds), self.max_seconds)
        if high <= low:
            return max(0.0, low)
        return max(0.0, rng.uniform(low, high) if rng is not None else random.uniform(low, high))


class Backoff:
    """Delays of a reconnect (or retry-the-statement) loop: full jitter, capped.

    The n-th delay in a row is drawn uniformly from 0 to ``min(cap, base * 2**n)``, so processes that lost
    the database together do not come back in step; ``reset()`` after a success starts again from ``base``.
    """

    def __init__(self, base: float = 0.05, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next ``next()`` may return."""
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next(self) -> float:
        """The delay before the next try; each call widens the window until the cap."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
