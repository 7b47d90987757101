"""Outcome: how a job ended in a drain or an eager run (a frozen record, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``state`` is the job's state afterwards: ``succeeded``, ``queued`` (failed, a retry is due
    later), ``dead`` or ``cancelled``; ``error`` is the last attempt's error message, if any."""

    id: int
    task: str
    state: str
    attempt: int
    result: Any = None
    error: str | None = None
