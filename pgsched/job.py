"""New-job requests and the rules of their fields: ``NewJob`` (and ``PlainJob``, the COPY path's lighter form) and
their validation. The stored row is ``pgsched.job_row.Job``.

A leaf module: no I/O. Every interface (Python, REST, CLI) builds a ``NewJob`` here, so
one set of rules validates input everywhere.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pgsched.errors import ValidationError

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "NewJob",
    "PlainJob",
    "ON_CONFLICT_POLICIES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "RUN_KEY_SCOPES",
    "check_range",
    "encode_args",
    "validate_args",
    "validate_meta",
    "validate_queue",
    "validate_tags",
    "validate_task_name",
]

QUEUE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
TASK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
MAX_ATTEMPTS_MAX = 1000
RUN_KEY_MAX = 512
# What a run key is unique over (pgsched.run_keys): the default keeps a key while its job's row exists.
RUN_KEY_SCOPES = ("retention", "active", "period")
# What an enqueue does when another job holds its run key: return that job, or debounce into it.
ON_CONFLICT_POLICIES = ("existing", "replace")
CONCURRENCY_KEY_MAX = 200
CONCURRENCY_LIMIT_MAX = 10_000
DEFAULT_MAX_ATTEMPTS = 5
TAGS_MAX = 32
TAG_MAX = 100
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


# A bulk enqueue names the same few tasks and queues thousands of times: each name is matched once.
@functools.lru_cache(maxsize=1024)
def _queue_ok(queue: str) -> bool:
    return QUEUE_RE.fullmatch(queue) is not None


@functools.lru_cache(maxsize=1024)
def _task_ok(task: str) -> bool:
    return TASK_RE.fullmatch(task) is not None


def validate_queue(queue: object, field_name: str = "queue") -> str:
    if not isinstance(queue, str) or not _queue_ok(queue):
        raise ValidationError(field_name, f"invalid queue name {queue!r}: must match {QUEUE_RE.pattern}")
    return queue


def validate_task_name(task: object, field_name: str = "task") -> str:
    if not isinstance(task, str) or not _task_ok(task):
        raise ValidationError(
            field_name,
            f"invalid task name {task!r}: letters, digits, _ . : - (up to 200), starting with a letter or _",
        )
    return task


# json.dumps with these options would build this encoder for every call.
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def validate_args(
    args: object, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, field_name: str = "args"
) -> dict[str, Any]:
    """Check that ``args`` is a JSON object PostgreSQL can store, within the size cap."""
    return encode_args(args, max_bytes=max_bytes, field_name=field_name)[0]


def encode_args(
    args: object, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, field_name: str = "args"
) -> tuple[dict[str, Any], str]:
    """``validate_args`` that also returns the JSON text it checked, so the insert need not encode again."""
    if args is None:
        return {}, "{}"
    if not isinstance(args, Mapping):
        raise ValidationError(field_name, f"must be a JSON object, got {type(args).__name__}")
    try:
        encoded = _JSON.encode(args)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field_name, f"is not JSON-serialisable: {exc}") from None
    if "\\u0000" in encoded:  # json.dumps escapes every NUL, in keys and values alike
        raise ValidationError(field_name, "must not contain the NUL character (\\u0000)")
    size = len(encoded.encode())
    if size > max_bytes:
        raise ValidationError(field_name, f"is {size} bytes encoded; the limit is {max_bytes}")
    return dict(args), encoded


def _check_instant(field_name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise ValidationError(field_name, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field_name, "must be timezone-aware (naive datetimes are ambiguous)")


def validate_tags(tags: object, field_name: str = "tags") -> tuple[str, ...]:
    """Up to ``TAGS_MAX`` distinct non-empty strings of up to ``TAG_MAX`` characters, order kept."""
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, list | tuple | set | frozenset):
        raise ValidationError(field_name, "must be an array of strings")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= TAG_MAX or "\x00" in tag:
            raise ValidationError(field_name, f"each tag is a string of 1 to {TAG_MAX} characters, got {tag!r}")
    out = tuple(dict.fromkeys(tags))
    if len(out) > TAGS_MAX:
        raise ValidationError(field_name, f"at most {TAGS_MAX} tags, got {len(out)}")
    return out


def validate_meta(
    meta: object, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, field_name: str = "meta"
) -> dict[str, Any]:
    """A JSON object, checked like ``args``."""
    return encode_args(meta, max_bytes=max_bytes, field_name=field_name)[0]


def check_range(field_name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field_name, f"must be an integer from {low} to {high}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated request to enqueue one job. Build it with ``NewJob.build``."""

    task: str
    args: dict[str, Any] = field(default_factory=dict)
    # None: the task's declared value, filled by the database at insert (pgsched.task_defaults).
    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    run_key: str | None = None
    max_attempts: int | None = None
    timeout: timedelta | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    # None: retention (or period, when run_key_period is given); see RUN_KEY_SCOPES.
    run_key_scope: str | None = None
    run_key_period: timedelta | None = None
    on_conflict: str = "existing"
    # ``args`` as the JSON text validation produced; None when built by hand (the insert encodes then).
    args_json: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        task: object,
        args: object = None,
        *,
        queue: object = None,
        priority: object = None,
        run_at: object = None,
        run_key: object = None,
        max_attempts: object = None,
        timeout: object = None,
        concurrency_key: object = None,
        concurrency_limit: object = None,
        tags: object = None,
        meta: object = None,
        expires_at: object = None,
        run_key_scope: object = None,
        run_key_period: object = None,
        on_conflict: object = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> NewJob:
        if run_at is not None:
            _check_instant("run_at", run_at)
        if expires_at is not None:
            _check_instant("expires_at", expires_at)
        if run_key is not None and (not isinstance(run_key, str) or not 1 <= len(run_key) <= RUN_KEY_MAX):
            raise ValidationError("run_key", f"must be a string of 1 to {RUN_KEY_MAX} characters")
        if isinstance(run_key, str) and "\x00" in run_key:
            raise ValidationError("run_key", "must not contain the NUL character")
        if run_key is None and run_key_scope is None and run_key_period is None and on_conflict is None:
            scope, period, policy = None, None, "existing"  # what _run_key_options answers for no key and no option
        else:
            scope, period, policy = _run_key_options(run_key, run_key_scope, run_key_period, on_conflict)
        if concurrency_key is not None and (
            not isinstance(concurrency_key, str)
            or not 1 <= len(concurrency_key) <= CONCURRENCY_KEY_MAX
            or "\x00" in concurrency_key
        ):
            raise ValidationError("concurrency_key", f"must be a string of 1 to {CONCURRENCY_KEY_MAX} characters")
        if concurrency_limit is not None:
            if concurrency_key is None:
                raise ValidationError("concurrency_limit", "needs a concurrency_key")
            check_range("concurrency_limit", concurrency_limit, 1, CONCURRENCY_LIMIT_MAX)
        if timeout is not None:
            if isinstance(timeout, int | float) and not isinstance(timeout, bool):
                timeout = timedelta(seconds=timeout)
            if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
                raise ValidationError("timeout", "must be a positive number of seconds")
        name, checked_args, queue_name, level, attempts, args_json = _plain_fields(
            task, args, queue, priority, max_attempts, max_payload_bytes
        )
        return cls(
            task=name,
            args=checked_args,
            queue=queue_name,
            priority=level,
            run_at=run_at,  # type: ignore[arg-type]
            run_key=run_key,
            max_attempts=attempts,
            timeout=timeout,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,  # type: ignore[arg-type]
            tags=() if tags is None else validate_tags(tags),
            meta={} if meta is None else validate_meta(meta, max_bytes=max_payload_bytes),
            expires_at=expires_at,  # type: ignore[arg-type]
            run_key_scope=scope,
            run_key_period=period,
            on_conflict=policy,
            args_json=args_json,
        )


def _plain_fields(
    task: object, args: object, queue: object, priority: object, max_attempts: object, max_payload_bytes: int
) -> tuple[str, dict[str, Any], str | None, int | None, int | None, str]:
    """The rules of a job's task, args, queue, priority and max_attempts (args first), for NewJob and PlainJob."""
    checked_args, args_json = encode_args(args, max_bytes=max_payload_bytes)
    return (
        validate_task_name(task),
        checked_args,
        None if queue is None else validate_queue(queue),
        None if priority is None else check_range("priority", priority, PRIORITY_MIN, PRIORITY_MAX),
        None if max_attempts is None else check_range("max_attempts", max_attempts, 1, MAX_ATTEMPTS_MAX),
        args_json,
    )


class PlainJob(NamedTuple):
    """A validated job that gives only a task, args, queue, priority and max_attempts (the usual item of a bulk
    enqueue): what the COPY of ``enqueue_many`` reads of a ``NewJob``, at about a quarter of its cost to build (a
    frozen dataclass sets each of its 17 fields through ``object.__setattr__``; a tuple is built at once), checked by
    the same rules as ``NewJob.build`` (``_plain_fields``); every other option holds a NewJob's default.
    Only the COPY builds these (never under a tracer, whose span hands jobs to user code)."""

    task: str
    args: dict[str, Any]
    queue: str | None
    priority: int | None
    max_attempts: int | None
    args_json: str
    run_at: None = None
    timeout: None = None
    concurrency_key: None = None
    concurrency_limit: None = None
    tags: tuple[str, ...] = ()
    expires_at: None = None

    @classmethod
    def build(
        cls,
        task: object,
        args: object,
        queue: object,
        priority: object,
        max_attempts: object,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> PlainJob:
        return cls(*_plain_fields(task, args, queue, priority, max_attempts, max_payload_bytes))

    @property
    def meta(self) -> dict[str, Any]:
        return {}  # a new one each time: a shared default could be changed by its reader


def _run_key_options(
    run_key: object, scope: object, period: object, policy: object
) -> tuple[str | None, timedelta | None, str]:
    """The run key's scope, period and conflict policy, checked; a period alone implies scope period."""
    if period is not None:
        if isinstance(period, int | float) and not isinstance(period, bool):
            period = timedelta(seconds=period)
        if not isinstance(period, timedelta) or period <= timedelta(0):
            raise ValidationError("run_key_period", "must be a positive number of seconds")
    if scope is not None and scope not in RUN_KEY_SCOPES:
        raise ValidationError("run_key_scope", f"must be one of {', '.join(RUN_KEY_SCOPES)}, got {scope!r}")
    if period is not None and scope not in (None, "period"):
        raise ValidationError("run_key_period", "is given only with run_key_scope period")
    if scope == "period" and period is None:
        raise ValidationError("run_key_period", "is required with run_key_scope period")
    if policy is not None and policy not in ON_CONFLICT_POLICIES:
        raise ValidationError("on_conflict", f"must be one of {', '.join(ON_CONFLICT_POLICIES)}, got {policy!r}")
    if run_key is None:
        for name, value in (("run_key_scope", scope), ("run_key_period", period), ("on_conflict", policy)):
            if value is not None:
                raise ValidationError(name, "needs a run_key")
        return None, None, "existing"
    return ("period" if period is not None else str(scope or "retention")), period, str(policy or "existing")
