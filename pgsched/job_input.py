"""Jobs from plain data: a mapping with the ``POST /jobs`` keys (``enqueue_many``, REST, a line of a
``.jsonl`` file) becomes a validated ``NewJob``, with the JSON-only checks (ISO times, bounded seconds)
for input that came as JSON. The one home of these rules for the API, the CLI and the client.

No I/O: it parses and validates, and builds on ``NewJob.build`` for the rules of a job itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgsched.clock import Clock
from pgsched.errors import ValidationError
from pgsched.job import NewJob, PlainJob
from pgsched.tasks import ENQUEUE_OPTIONS, resolve_delay

__all__ = [
    "ItemsShape",
    "MAX_DELAY_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "MIN_GRACE_SECONDS",
    "MIN_TIMEOUT_SECONDS",
    "build_job",
    "copy_job_from_mapping",
    "items_shape",
    "new_job_from_json",
    "new_job_from_mapping",
    "parse_datetime",
    "parse_seconds",
]

MAX_DELAY_SECONDS = 10 * 366 * 86400.0
MAX_TIMEOUT_SECONDS = 366 * 86400.0
# Below a millisecond an interval rounds towards zero, which the tables refuse.
MIN_TIMEOUT_SECONDS = MIN_GRACE_SECONDS = 0.001

# The POST /jobs keys: the task, its args, every enqueue option but a connection, and the JSON spellings in seconds.
# The JSON spellings in seconds, by the option each one gives.
_SECONDS_KEYS = {
    "delay_seconds": "delay",
    "start_within_seconds": "start_within",
    "run_key_period_seconds": "run_key_period",
}
_ITEM_KEYS = (ENQUEUE_OPTIONS - {"conn"}) | {"task", "args"} | set(_SECONDS_KEYS)
_NOT_OPTIONS = frozenset({"task", "args", *_SECONDS_KEYS})
# The keys whose value may put tags, meta or a deadline in a job's row.
_LABEL_KEYS = frozenset({"tags", "meta", "expires_at", "start_within", "start_within_seconds"})
# dict first: the ABC's check costs more than the rest of an item's checks. A tuple, built once (``dict | Mapping``
# would build a union at every call).
_MAPPINGS = (dict, Mapping)


def new_job_from_mapping(item: Mapping[str, Any], *, clock: Clock, max_payload_bytes: int) -> NewJob:
    """Build a NewJob from a dict with the ``POST /jobs`` keys (used by enqueue_many, REST and the CLI)."""
    if not isinstance(item, _MAPPINGS):
        raise ValidationError("item", f"must be an object, got {type(item).__name__}")
    if not _ITEM_KEYS.issuperset(item):
        raise ValidationError(sorted(set(item) - _ITEM_KEYS)[0], "unknown field")
    if "task" not in item:
        raise ValidationError("task", "is required")
    options = {k: v for k, v in item.items() if k not in _NOT_OPTIONS}
    if not _SECONDS_KEYS.keys().isdisjoint(item):
        for key, option in _SECONDS_KEYS.items():
            if key in item:
                options[option] = item[key]
    return build_job(item["task"], item.get("args"), options, clock=clock, max_payload_bytes=max_payload_bytes)


# The keys of an item that ``PlainJob`` holds: the usual item of a bulk enqueue.
_PLAIN_KEYS = frozenset({"task", "args", "queue", "priority", "max_attempts"})


def copy_job_from_mapping(item: Mapping[str, Any], *, clock: Clock, max_payload_bytes: int) -> NewJob | PlainJob:
    """``new_job_from_mapping`` for a row of the COPY: a dict that gives only the ``PlainJob`` keys becomes one
    (the same checks in the same order, so the same first error; about a quarter of the cost)."""
    if type(item) is dict and "task" in item and _PLAIN_KEYS.issuperset(item):
        return PlainJob.build(
            item["task"],
            item.get("args"),
            item.get("queue"),
            item.get("priority"),
            item.get("max_attempts"),
            max_payload_bytes=max_payload_bytes,
        )
    return new_job_from_mapping(item, clock=clock, max_payload_bytes=max_payload_bytes)


@dataclass(frozen=True, slots=True)
class ItemsShape:
    """What a COPY of plain items must know before their jobs are built (read off the items, not validated):
    every task whose item leaves queue, priority or max_attempts out, and whether any item may carry labels."""

    names: frozenset[str]
    labelled: bool


def items_shape(items: Sequence[object]) -> ItemsShape | None:
    """The shape of items to stream into a COPY, or None when one gives a run key (the keyed insert takes those,
    every job built first). A guess errs wide: a label key given as empty or None still counts, and an item that
    is not a mapping adds nothing (building it fails)."""
    names = set()
    labelled = False
    for item in items:
        if not isinstance(item, _MAPPINGS):
            continue
        if item.get("run_key") is not None:
            return None
        task = item.get("task")
        if isinstance(task, str) and (
            item.get("queue") is None or item.get("priority") is None or item.get("max_attempts") is None
        ):
            names.add(task)
        labelled = labelled or not _LABEL_KEYS.isdisjoint(item)
    return ItemsShape(frozenset(names), labelled)


def build_job(
    task: str, args: Mapping[str, Any] | None, options: dict[str, Any], *, clock: Clock, max_payload_bytes: int
) -> NewJob:
    if "delay" in options or "start_within" in options:  # else resolve_delay would return them unchanged
        options = resolve_delay(dict(options), clock.now())
    return NewJob.build(task, args, max_payload_bytes=max_payload_bytes, **options)


def parse_datetime(value: object, field: str) -> datetime:
    """An ISO 8601 time with a UTC offset."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationError(field, "must be an ISO 8601 time string with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"invalid ISO 8601 time {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationError(field, "needs a UTC offset, e.g. 2030-01-01T09:00:00+00:00")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, "is out of range (years 1 to 9999 in UTC)") from None


def parse_seconds(value: object, field: str, *, minimum: float, maximum: float, exclusive_min: bool = False) -> float:
    ok = False
    # An int past a float's range (a JSON integer of 309+ digits) is compared as it is: float() would overflow.
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value))
    ):
        ok = (value > minimum if exclusive_min else value >= minimum) and value <= maximum
    if not ok:
        raise ValidationError(field, f"must be a number of seconds from {minimum:g} to {maximum:g}")
    return float(value)  # type: ignore[arg-type]


def new_job_from_json(item: object, *, clock: Clock, max_payload_bytes: int) -> NewJob:
    """A NewJob from a decoded JSON object with the POST /jobs keys (REST body, a line of a .jsonl file).

    JSON has no datetimes and unbounded numbers, so run_at, delay_seconds and timeout are
    checked here before the shared rules of ``new_job_from_mapping``.
    """
    if not isinstance(item, Mapping):
        raise ValidationError("job", "must be a JSON object")
    data = dict(item)
    if "delay" in data:
        raise ValidationError("delay", "unknown field (use delay_seconds)")
    if data.get("run_at") is not None:
        data["run_at"] = parse_datetime(data["run_at"], "run_at")
    if data.get("delay_seconds") is not None:
        data["delay_seconds"] = parse_seconds(
            data["delay_seconds"], "delay_seconds", minimum=0, maximum=MAX_DELAY_SECONDS
        )
    if data.get("timeout") is not None:
        data["timeout"] = parse_seconds(
            data["timeout"], "timeout", minimum=MIN_TIMEOUT_SECONDS, maximum=MAX_TIMEOUT_SECONDS
        )
    if "start_within" in data:
        raise ValidationError("start_within", "unknown field (use start_within_seconds)")
    if data.get("expires_at") is not None:
        data["expires_at"] = parse_datetime(data["expires_at"], "expires_at")
    if data.get("start_within_seconds") is not None:
        data["start_within_seconds"] = parse_seconds(
            data["start_within_seconds"],
            "start_within_seconds",
            minimum=0,
            maximum=MAX_DELAY_SECONDS,
            exclusive_min=True,
        )
    if "run_key_period" in data:
        raise ValidationError("run_key_period", "unknown field (use run_key_period_seconds)")
    if data.get("run_key_period_seconds") is not None:
        data["run_key_period_seconds"] = parse_seconds(
            data["run_key_period_seconds"],
            "run_key_period_seconds",
            minimum=0,
            maximum=MAX_DELAY_SECONDS,
            exclusive_min=True,
        )
    try:
        return new_job_from_mapping(data, clock=clock, max_payload_bytes=max_payload_bytes)
    except ValidationError as exc:
        field = {option: key for key, option in _SECONDS_KEYS.items()}.get(exc.field, exc.field)
        raise ValidationError(field, exc.message) from None
