"""``AuthFailureLimiter``: after too many failed authentications from one client address within a
window, that address gets 429 with Retry-After, before any token is looked up in the database.

Interface layer, in memory and per process; the table is bounded (oldest addresses are forgotten
first), so a flood of spoofed-looking sources cannot grow it without limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["AuthFailureLimiter"]

MAX_TRACKED_CLIENTS = 10_000


class AuthFailureLimiter:
    """Counts failures per client in a sliding window of ``window`` seconds."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        max_clients: int = MAX_TRACKED_CLIENTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._monotonic = monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""
        now = self._monotonic()
        times = self._recent(client, now)
        if times is None or len(times) < self._limit:
            return None
        return max(1, math.ceil(times[0] + self._window - now))

    def record_failure(self, client: str) -> None:
        now = self._monotonic()
        times = self._recent(client, now)
        if times is None:
            times = deque(maxlen=self._limit)
            self._failures[client] = times
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        times.append(now)

    def __len__(self) -> int:
        return len(self._failures)
