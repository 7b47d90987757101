"""Time as a seam: the system clock, and a fixed clock for tests that must not sleep.

A leaf module. Queries take ``coalesce(%(now)s::timestamptz, now())``: the system clock
passes ``None`` so the database's own clock is used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    def db_now(self) -> datetime | None:
        """What to pass as ``%(now)s``: None lets PostgreSQL use its own clock."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def db_now(self) -> datetime | None:
        return None


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def db_now(self) -> datetime | None:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant

    def advance(self, delta: timedelta) -> None:
        self._now += delta
