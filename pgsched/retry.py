"""Retry policy: exponential backoff with jitter. A leaf module, pure functions."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after attempt ``n`` failed: base * 2**(n-1), capped, jittered."""

    base_seconds: float = 1.0
    max_seconds: float = 3600.0
    jitter: float = 0.1

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        exponent = max(attempt - 1, 0)
        raw: float = min(self.base_seconds * 2.0 ** min(exponent, 62), self.max_seconds)
        spread = raw * self.jitter
        jitter = rng.uniform(-spread, spread) if rng is not None else random.uniform(-spread, spread)
        return max(0.0, raw + jitter)
