"""How an attempt ended, as the ``Finished`` record the completer writes: success, failure, timeout, cancel,
or a control signal the task raised or returned (``pgsched.control``: snooze, retry, discard, cancel).

Pure functions: results are encoded to JSON here (a value PostgreSQL cannot store is a failure with a
clear error), and error entries are made safe for ``jsonb`` (no NUL, no lone surrogates, capped).
"""

from __future__ import annotations

import json
import traceback
from datetime import UTC, datetime
from typing import Any

from pgsched.control import Cancel, Discard, JobControl, Retry, Snooze
from pgsched.errors import PermanentError
from pgsched.retry import RetryPolicy
from pgsched.worker_store import ClaimedJob, Finished, Outcome

__all__ = ["cancelled", "controlled", "encode_result", "error_entry", "failure", "success", "timed_out"]

_MAX_ERROR = 2_000
_MAX_TRACEBACK = 16_000


class ResultNotStorable(TypeError):
    """The task's return value cannot be stored in ``jobs.result``."""


def _clean(text: str, limit: int, *, tail: bool = False) -> str:
    text = text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."


def error_entry(attempt: int, error: str, *, kind: str, tb: str | None = None) -> dict[str, Any]:
    """One element of ``jobs.errors``: {at, attempt, error, traceback, kind}."""
    return {
        "at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
        "error": _clean(error, _MAX_ERROR),
        "traceback": None if tb is None else _clean(tb, _MAX_TRACEBACK, tail=True),
        "kind": kind,
    }


def encode_result(value: Any, *, max_bytes: int) -> str | None:
    """The result as JSON text for ``jobs.result``; ``ResultNotStorable`` when it cannot or must not be stored."""
    if value is None:
        return None
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultNotStorable(f"the task's result is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise ResultNotStorable("the task's result contains the NUL character, which jsonb cannot store")
    # json.dumps escapes every non-ASCII character: its length is the size in bytes.
    if len(text) > max_bytes:
        raise ResultNotStorable(
            f"the task's result is {len(text):,} bytes of JSON, over the limit of {max_bytes:,} bytes"
            " (PGSCHED_RESULT_MAX_BYTES)"
        )
    return text


def success(job: ClaimedJob, encoded: str | None) -> Finished:
    return Finished(job.id, job.attempt, job.lease, Outcome.SUCCEEDED, result=encoded)


def failure(job: ClaimedJob, exc: BaseException, retry: RetryPolicy, *, final: bool = False) -> Finished:
    """A failed attempt; ``final`` (the task's ``retry_on`` / ``dont_retry_on`` said so) makes it dead now,
    with an entry of kind ``no_retry``."""
    tb = "".join(traceback.format_exception(exc))
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    kind = "no_retry" if final else getattr(exc, "pgsched_error_kind", "exception")  # crash, memory: process children
    entry = error_entry(job.attempt, message, kind=kind, tb=tb)
    final = final or isinstance(exc, PermanentError)
    return Finished(
        job.id, job.attempt, job.lease, Outcome.FAILED, error=entry, delay=retry.delay(job.attempt), final=final
    )


def timed_out(job: ClaimedJob, seconds: float, retry: RetryPolicy) -> Finished:
    entry = error_entry(job.attempt, f"timed out after {seconds:g}s", kind="timeout")
    return Finished(job.id, job.attempt, job.lease, Outcome.FAILED, error=entry, delay=retry.delay(job.attempt))


def cancelled(job: ClaimedJob) -> Finished:
    return Finished(
        job.id, job.attempt, job.lease, Outcome.CANCELLED, error=error_entry(job.attempt, "cancelled", kind="cancel")
    )


def controlled(job: ClaimedJob, signal: JobControl, retry: RetryPolicy, *, max_snoozes: int) -> Finished:
    """The task raised or returned a control signal; its entry in ``jobs.errors`` has the signal's kind."""
    entry = error_entry(job.attempt, signal.describe(), kind=signal.kind)
    base = (job.id, job.attempt, job.lease)
    if isinstance(signal, Snooze):
        return Finished(*base, Outcome.SNOOZED, error=entry, delay=signal.seconds, snooze_limit=max_snoozes)
    if isinstance(signal, Retry):
        delay = retry.delay(job.attempt) if signal.after is None else signal.after
        return Finished(*base, Outcome.FAILED, error=entry, delay=delay)
    if isinstance(signal, Cancel):
        return Finished(*base, Outcome.CANCELLED, error=entry)
    if isinstance(signal, Discard):
        return Finished(*base, Outcome.FAILED, error=entry, final=True)
    return failure(job, signal, retry)  # a bare JobControl: an ordinary failure
