"""Queue flow-control settings: what may be changed, validated before it reaches the database.

Leaf module. ``QueueChanges.build`` takes the ``PATCH /queues/{name}`` keys (also used by the CLI):
``paused`` (bool), ``concurrency``, ``rate_limit``, ``rate_burst`` (int or None for unlimited /
default) and ``rate_period_seconds`` (number). Keys left out stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pgsched.errors import ValidationError

__all__ = ["LIMIT_MAX", "QueueChanges"]

LIMIT_MAX = 1_000_000
_PERIOD_MIN = 0.001
_PERIOD_MAX = 86_400.0
_KEYS = ("paused", "concurrency", "rate_limit", "rate_period_seconds", "rate_burst")


def _limit(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMIT_MAX:
        raise ValidationError(field, f"must be an integer from 1 to {LIMIT_MAX} or null, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class QueueChanges:
    """Settings to change; ``given`` names the ones the caller set."""

    given: frozenset[str]
    paused: bool = False
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: timedelta = timedelta(seconds=1)
    rate_burst: int | None = None

    @classmethod
    def build(cls, changes: Mapping[str, Any]) -> QueueChanges:
        unknown = sorted(set(changes) - set(_KEYS))
        if unknown:
            raise ValidationError(unknown[0], f"unknown field (known: {', '.join(_KEYS)})")
        if not changes:
            raise ValidationError("body", f"give at least one of {', '.join(_KEYS)}")
        paused = changes.get("paused", False)
        if not isinstance(paused, bool):
            raise ValidationError("paused", f"must be true or false, got {paused!r}")
        period = changes.get("rate_period_seconds", 1.0)
        if isinstance(period, bool) or not isinstance(period, int | float) or not _PERIOD_MIN <= period <= _PERIOD_MAX:
            raise ValidationError("rate_period_seconds", f"must be a number from {_PERIOD_MIN} to {_PERIOD_MAX:.0f}")
        return cls(
            given=frozenset(changes),
            paused=paused,
            concurrency=_limit("concurrency", changes.get("concurrency")),
            rate_limit=_limit("rate_limit", changes.get("rate_limit")),
            rate_period=timedelta(seconds=float(period)),
            rate_burst=_limit("rate_burst", changes.get("rate_burst")),
        )

    def params(self, queue: str) -> dict[str, Any]:
        """Parameters of the ``queue_configure`` query."""
        return {
            "name": queue,
            "paused": self.paused,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "rate_period": self.rate_period,
            "rate_burst": self.rate_burst,
            **{f"set_{key.removesuffix('_seconds')}": key in self.given for key in _KEYS},
        }
