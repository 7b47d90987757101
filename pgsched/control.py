"""Control flow from inside a task: ``raise Snooze(30)``, ``Retry(after=…)``, ``Discard(…)``, ``Cancel(…)``.

A leaf module: the four signals and nothing else; the worker turns them into the job's next state.
Each may be raised or returned by the task. Every one leaves an entry in ``jobs.errors`` whose
``kind`` names it (``snooze``, ``retry``, ``discard``, ``cancel``), so every surface shows what
ended or delayed a job.

- ``Snooze(seconds)``: run again in ``seconds`` without spending an attempt (the attempt count
  stays). A task snoozes a job at most ``max_snoozes`` times (``@app.task(max_snoozes=…)``,
  default 100); the next snooze makes the job ``dead`` with an entry of kind ``snooze_limit``.
- ``Retry(after=seconds)``: this attempt failed, retry in ``after`` seconds (e.g. a ``Retry-After``
  header) instead of the task's backoff; it counts as an attempt, so past ``max_attempts`` the job
  is ``dead``. ``Retry()`` uses the task's backoff.
- ``Discard(reason)``: the job can never succeed (bad input): ``dead`` now, in the dead letter,
  retryable by hand, no more attempts.
- ``Cancel(reason)``: the job is no longer wanted: ``cancelled`` now, not an error, no more attempts.
"""

from __future__ import annotations

import math

__all__ = ["Cancel", "Discard", "JobControl", "Retry", "Snooze"]


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class JobControl(Exception):  # a signal to the worker, not an error (hence no "Error" suffix)
    """Base of the control-flow signals; ``kind`` is the ``jobs.errors`` entry kind it leaves."""

    kind = "control"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason

    def describe(self) -> str:
        """The text of the job's error entry."""
        return self.reason or self.kind


class Snooze(JobControl):
    """Run the job again in ``seconds`` without spending an attempt."""

    kind = "snooze"

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason)
        self.args = (seconds, reason)
        self.seconds = _seconds(seconds, "Snooze seconds")

    def describe(self) -> str:
        return f"snoozed for {self.seconds:g}s" + (f": {self.reason}" if self.reason else "")


class Retry(JobControl):
    """Fail this attempt and retry ``after`` seconds from now (None: the task's backoff); counts an attempt."""

    kind = "retry"

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        super().__init__(reason)
        self.args = (after, reason)
        self.after = None if after is None else _seconds(after, "Retry after")

    def describe(self) -> str:
        when = "with the task's backoff" if self.after is None else f"after {self.after:g}s"
        return f"retry {when}" + (f": {self.reason}" if self.reason else "")


class Discard(JobControl):
    """End the job now as ``dead`` (it can never succeed); no more attempts."""

    kind = "discard"

    def describe(self) -> str:
        return f"discarded: {self.reason}" if self.reason else "discarded"


class Cancel(JobControl):
    """End the job now as ``cancelled`` (no longer wanted, not an error); no more attempts."""

    kind = "cancel"

    def describe(self) -> str:
        return f"cancelled by the task: {self.reason}" if self.reason else "cancelled by the task"
