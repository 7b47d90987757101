"""The run-key dedupe cache seam: the ``DedupeCache`` protocol, the no-op cache, and a circuit breaker.

Infra layer; knows nothing of Redis and runs no SQL. PostgreSQL's unique index on ``jobs.run_key``
is the only authority: a cache may say "this key belonged to job N" (a hint the job store checks
by primary key before it answers) or "I don't know", and it is written only after the job's row
has committed. Every entry lives under a scope naming one database, so databases sharing a cache
never see each other's ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["CircuitBreaker", "DedupeCache", "NullCache"]

log = logging.getLogger(__name__)


class DedupeCache(Protocol):
    """An L1 cache of (scope, run key) -> job id. Every method swallows its own failures and never blocks long."""

    @property
    def enabled(self) -> bool: ...

    def get_many(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]: ...

    def put_many(self, scope: str, entries: Mapping[str, int]) -> None: ...

    def forget(self, scope: str, run_keys: Sequence[str]) -> None: ...

    async def get_many_async(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]: ...

    async def put_many_async(self, scope: str, entries: Mapping[str, int]) -> None: ...

    async def forget_async(self, scope: str, run_keys: Sequence[str]) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class NullCache:
    """No cache configured: every lookup goes to PostgreSQL."""

    @property
    def enabled(self) -> bool:
        return False

    def get_many(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]:
        return {}

    def put_many(self, scope: str, entries: Mapping[str, int]) -> None:
        return None

    def forget(self, scope: str, run_keys: Sequence[str]) -> None:
        return None

    async def get_many_async(self, scope: str, run_keys: Sequence[str]) -> dict[str, int]:
        return {}

    async def put_many_async(self, scope: str, entries: Mapping[str, int]) -> None:
        return None

    async def forget_async(self, scope: str, run_keys: Sequence[str]) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"state": "disabled"}

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class CircuitBreaker:
    """Closed (calls allowed) -> open after ``threshold`` failures in a row (calls skipped for
    ``cooldown`` seconds) -> half-open (one probe; success closes, failure opens again).

    Only one caller gets the half-open probe: the others keep skipping until it succeeds, so a
    blackholed cache costs one timeout per cooldown, not one per concurrent caller.
    Warnings are rate-limited to one per ``warn_every`` seconds so a dead cache cannot flood logs.
    """

    def __init__(self, *, threshold: int = 3, cooldown: float = 5.0, warn_every: float = 30.0) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._warn_every = warn_every
        self._failures = 0
        self._opened_at: float | None = None
        self._last_warning = -1e9
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self._opened_at >= self._cooldown else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "half-open":
            self._opened_at = time.monotonic()  # this caller probes; the rest wait for its answer
        return state != "open"

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self, error: BaseException) -> None:
        self._failures += 1
        self.last_error = f"{type(error).__name__}: {error}"
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = time.monotonic()
        now = time.monotonic()
        if now - self._last_warning >= self._warn_every:
            self._last_warning = now
            log.warning(
                "dedupe cache unavailable; falling back to PostgreSQL",
                extra={"event": "dedupe_cache_error", "error": self.last_error, "circuit": self.state},
            )
