"""The COPY of ``enqueue_many`` builds an item that gives only task, args, queue, priority and max_attempts as a
``PlainJob`` (a tuple) instead of a ``NewJob``: the same checks in the same order, so the same first error, and the
same COPY row. No database: the rows are compared byte for byte (tests/test_enqueue_rows.py stores them)."""

from __future__ import annotations

from collections import UserDict
from datetime import UTC, datetime
from typing import Any

import pytest

from pgsched.clock import SystemClock
from pgsched.enqueue_rows import copy_blocks
from pgsched.errors import ValidationError
from pgsched.job import NewJob, PlainJob
from pgsched.job_input import copy_job_from_mapping, new_job_from_mapping

_CLOCK = SystemClock()
_LIMIT = 64

_PLAIN: list[dict[str, Any]] = [
    {"task": "t"},
    {"task": "mod.fn:x-1", "args": {"name": "Zoë", "n": [1, 2.5, None]}},
    {"task": "t", "queue": "q.u-1", "priority": -1000, "max_attempts": 1000},
    {"task": "t", "args": None, "queue": None, "priority": None, "max_attempts": None},
    {"task": "t", "priority": 1000, "max_attempts": 1},
]

# Each breaks one rule or several (the first in NewJob's order wins: args, task, queue, priority, max_attempts).
_BAD: list[dict[str, Any]] = [
    {"task": "9bad"},
    {"task": 7},
    {"task": "t", "args": []},
    {"task": "t", "args": {"x": float("nan")}},
    {"task": "t", "args": {"x": "\x00"}},
    {"task": "t", "args": {"x": "y" * _LIMIT}},
    {"task": "t", "queue": "Not Valid"},
    {"task": "t", "priority": 1001},
    {"task": "t", "priority": True},
    {"task": "t", "priority": "high"},
    {"task": "t", "max_attempts": 0},
    {"task": "9bad", "args": [], "queue": "X", "priority": 5000, "max_attempts": 0},
    {"task": "9bad", "queue": "X", "priority": 5000, "max_attempts": 0},
    {"task": "t", "queue": "X", "priority": 5000},
]


def _error(build: Any, item: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        build(item, clock=_CLOCK, max_payload_bytes=_LIMIT)
    return info.value.field, info.value.message


def _rows(jobs: list[Any], labelled: bool) -> bytes:
    now = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    defaults = {"t": ("default", 0, 5), "mod.fn:x-1": ("other", 3, 2)}
    blocks = copy_blocks(range(1, len(jobs) + 1), jobs, now=now, defaults=defaults, labelled=labelled, encoding="utf-8")
    return b"".join(blocks)


def test_an_item_of_plain_keys_becomes_a_plain_job_and_any_other_a_new_job() -> None:
    for item in _PLAIN:
        assert type(copy_job_from_mapping(item, clock=_CLOCK, max_payload_bytes=_LIMIT)) is PlainJob
    for item in ({"task": "t", "tags": []}, {"task": "t", "timeout": 1}, UserDict({"task": "t"})):
        assert type(copy_job_from_mapping(item, clock=_CLOCK, max_payload_bytes=_LIMIT)) is NewJob


@pytest.mark.parametrize("labelled", [False, True])
def test_a_plain_job_makes_the_copy_row_its_new_job_makes(labelled: bool) -> None:
    plain = [copy_job_from_mapping(item, clock=_CLOCK, max_payload_bytes=_LIMIT) for item in _PLAIN]
    full = [new_job_from_mapping(item, clock=_CLOCK, max_payload_bytes=_LIMIT) for item in _PLAIN]
    assert all(type(job) is PlainJob for job in plain)
    assert _rows(plain, labelled) == _rows(full, labelled)
    assert [(p.task, p.args, p.queue, p.priority, p.max_attempts, p.args_json) for p in plain] == [
        (f.task, f.args, f.queue, f.priority, f.max_attempts, f.args_json) for f in full
    ]


@pytest.mark.parametrize("item", _BAD, ids=lambda item: repr(item)[:60])
def test_a_bad_plain_item_fails_as_it_fails_as_a_new_job(item: dict[str, Any]) -> None:
    assert _error(copy_job_from_mapping, item) == _error(new_job_from_mapping, item)


def test_a_plain_job_reads_every_other_option_as_a_new_jobs_default() -> None:
    plain = PlainJob.build("t", None, None, None, None)
    default = NewJob.build("t")
    for name in ("run_at", "timeout", "concurrency_key", "concurrency_limit", "tags", "meta", "expires_at"):
        assert getattr(plain, name) == getattr(default, name), name
