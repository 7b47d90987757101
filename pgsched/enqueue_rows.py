"""The rows and parameters of an enqueue: what the job store sends for one job, a keyed batch or a COPY
(with each task's declared defaults filled in), and how a cache's verified hints merge with a fresh
insert's ids. Also the parameters of the job list.

Pure: it builds values for ``store`` and runs nothing.
"""

from __future__ import annotations

import functools
import itertools
import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from pgsched.job import NewJob, PlainJob
from pgsched.job_row import JobState
from pgsched.pg_arrays import NULL, TEXT_OID, frame
from pgsched.queries import query

__all__ = [
    "Defaults",
    "ahead",
    "args",
    "cacheable",
    "copy_blocks",
    "copy_row",
    "copy_statement",
    "holders_params",
    "ids_in_order",
    "insert_params",
    "insert_query",
    "keyed_params",
    "labelled",
    "learned",
    "list_params",
    "list_query",
    "merged",
    "reserve_params",
    "reserved_defaults",
    "resolved",
    "still_held",
    "unresolved",
]


def _as_is(text: str) -> str:
    return text


def args(job: NewJob) -> Jsonb:
    """The job's args for psycopg, reusing the JSON text validation already produced."""
    return Jsonb(job.args) if job.args_json is None else Jsonb(job.args_json, dumps=_as_is)


def insert_query(job: NewJob, *, whole: bool = True) -> Any:
    """The one-job statement: a plain insert without a run key, the take-then-insert statement with one.
    ``whole=False``: the plain insert returns only ``(id, queue)``, what an enqueue call reports (see ``added``)."""
    if job.run_key is not None:
        return query("job_insert_keyed")
    return query("job_insert") if whole else _insert_returning_id()


@functools.cache
def _insert_returning_id() -> str:
    """``job_insert`` (its one home, sql/jobs.sql) with ``RETURNING id, queue`` for its last clause: building and
    parsing the whole row took about 0.15 ms of a 1.2 ms enqueue call (a 20 ms-spaced call on the 2-core test VM)."""
    head, returning, _ = query("job_insert").rpartition("\nRETURNING ")
    if not returning:
        raise RuntimeError("sql/jobs.sql: job_insert must end with a RETURNING clause")
    return f"{head}{returning}id, queue"


def insert_params(job: NewJob, now: datetime | None) -> dict[str, Any]:
    return {
        "task": job.task,
        "args": args(job),
        "queue": job.queue,
        "priority": job.priority,
        "run_at": job.run_at,
        "now": now,
        "run_key": job.run_key,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
        "tags": list(job.tags),
        "meta": Jsonb(job.meta),
        "expires_at": job.expires_at,
        "run_key_scope": job.run_key_scope,
        "run_key_period": job.run_key_period,
        "on_conflict": job.on_conflict,
    }


# A task's (queue, priority, max_attempts) as pgsched.task_defaults resolves them, by task name.
Defaults = Mapping[str, tuple[str, int, int]]


def unresolved(jobs: Sequence[NewJob]) -> list[str]:
    """Task names of jobs that leave a default out: a bulk insert resolves them in one query first,
    so the insert trigger (one registry look-up per row) never fires for it."""
    return sorted({j.task for j in jobs if j.queue is None or j.priority is None or j.max_attempts is None})


def reserve_params(count: int, names: Sequence[str], *, apart: bool) -> dict[str, Any]:
    """job_ids_reserve's parameters: ``count`` ids, the defaults of ``names``; ``apart``: the reserve is a transaction
    of its own (an autocommit connection), whose commit need not wait for the WAL flush (the insert's commit does)."""
    return {"n": count, "names": sorted(names), "apart": apart}


def resolved(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, int, int]]:
    return {r["name"]: (r["queue"], r["priority"], r["max_attempts"]) for r in rows}


def reserved_defaults(row: Mapping[str, Any]) -> dict[str, tuple[str, int, int]]:
    """The defaults that job_ids_reserve returned with the ids (parallel arrays, NULL for no names), by task name."""
    if row["names"] is None:
        return {}
    return dict(zip(row["names"], zip(row["queues"], row["priorities"], row["max_attempts"], strict=True), strict=True))


def _filled(job: NewJob | PlainJob, defaults: Defaults) -> tuple[str | None, int | None, int | None]:
    if job.queue is not None and job.priority is not None and job.max_attempts is not None:
        return job.queue, job.priority, job.max_attempts
    queue, priority, attempts = defaults[job.task]
    return (
        queue if job.queue is None else job.queue,
        priority if job.priority is None else job.priority,
        attempts if job.max_attempts is None else job.max_attempts,
    )


def keyed_params(
    ids: Sequence[int], jobs: Sequence[NewJob], defaults: Defaults, now: datetime | None
) -> dict[str, Any]:
    filled = [_filled(j, defaults) for j in jobs]
    return {
        "now": now,
        "run_key_scopes": [j.run_key_scope for j in jobs],
        "run_key_periods": [j.run_key_period for j in jobs],
        "on_conflicts": [j.on_conflict for j in jobs],
        "ids": list(ids),
        "tasks": [j.task for j in jobs],
        "args": [args(j) for j in jobs],
        "queues": [f[0] for f in filled],
        "priorities": [f[1] for f in filled],
        "run_ats": [j.run_at for j in jobs],
        "run_keys": [j.run_key for j in jobs],
        "max_attempts": [f[2] for f in filled],
        "timeouts": [j.timeout for j in jobs],
        "concurrency_keys": [j.concurrency_key for j in jobs],
        "concurrency_limits": [j.concurrency_limit for j in jobs],
        "tags": [Jsonb(list(j.tags)) for j in jobs],
        "metas": [Jsonb(j.meta) for j in jobs],
        "expires_ats": [j.expires_at for j in jobs],
    }


def labelled(jobs: Sequence[NewJob]) -> bool:
    """Whether the COPY of these jobs carries the label columns: some job has tags, meta or a deadline."""
    return any(j.tags or j.meta or j.expires_at for j in jobs)


def copy_statement(labelled: bool) -> Any:
    """The COPY statement, with the label columns or without."""
    return query("job_copy_labelled") if labelled else query("job_copy")


# Binary COPY data, encoded here rather than field by field through psycopg's dumpers (whose args and meta go
# through a Python call each, and whose rows reach the server only in 32 KiB buffers): a header, each row as a
# 16-bit field count then each field as a 32-bit length (-1: NULL) and its bytes in the type's binary form
# (int8/int2/int4 big-endian, timestamptz as microseconds since 2000-01-01 UTC, interval as microseconds, days,
# months, jsonb as version 1 then its text, text[] as an array header then its elements), then a trailer.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_TRAILER = b"\xff\xff"
_LENGTH = struct.Struct(">i").pack
_ID = struct.Struct(">hiq").pack
_INT2 = struct.Struct(">ih").pack
_INT4 = struct.Struct(">ii").pack
_INT8 = struct.Struct(">iq").pack
_INTERVAL = struct.Struct(">iqii").pack
_NO_TAGS = _LENGTH(12) + frame(TEXT_OID, 0, False, b"")  # an empty text[]: no dimension
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# About 100 rows a block: the server inserts the first rows while later ones are still being built, and a call of
# a thousand rows does not wait for the server to insert a third of them after its last row is built.
COPY_BLOCK_BYTES = 8192


def _instant(value: datetime) -> bytes:
    return _INT8(8, (value - _PG_EPOCH) // _MICROSECOND)


def _json(text: str) -> bytes:
    data = text.encode()
    return _LENGTH(len(data) + 1) + b"\x01" + data


class _CopyRows:
    """Each job's binary COPY row: fields shared by many rows (a task's name, the queue, priority, due time and
    attempts of a job with no other option) are encoded once per COPY."""

    def __init__(self, now: datetime, defaults: Defaults, labelled: bool, encoding: str) -> None:
        self._defaults = defaults
        self._labelled = labelled
        self._encoding = encoding
        self._now = _instant(now)
        self._texts: dict[str, bytes] = {}
        self._plain: dict[tuple[str | None, int | None, int | None], bytes] = {}

    def _text(self, value: str | None) -> bytes:
        if value is None:
            return NULL
        field = self._texts.get(value)
        if field is None:
            data = value.encode(self._encoding)
            field = self._texts[value] = _LENGTH(len(data)) + data
        return field

    def row(self, job_id: int, job: NewJob | PlainJob) -> bytes:
        queue, priority, attempts = _filled(job, self._defaults)
        if job.run_at is None and job.timeout is None and job.concurrency_key is None:
            rest = self._plain.get((queue, priority, attempts))
            if rest is None:
                rest = self._plain[(queue, priority, attempts)] = self._rest(job, queue, priority, attempts)
        else:
            rest = self._rest(job, queue, priority, attempts)
        args = job.args_json if job.args_json is not None else json.dumps(job.args)
        row = _ID(13 if self._labelled else 10, 8, job_id) + self._text(job.task) + _json(args) + rest
        return row + self._labels(job) if self._labelled else row

    def _rest(self, job: NewJob | PlainJob, queue: str | None, priority: int | None, attempts: int | None) -> bytes:
        """queue, priority, run_at, max_attempts, timeout, concurrency_key, concurrency_limit."""
        timeout = job.timeout
        return b"".join(
            (
                self._text(queue),
                NULL if priority is None else _INT2(2, priority),
                self._now if job.run_at is None else _instant(job.run_at),
                NULL if attempts is None else _INT4(4, attempts),
                NULL
                if timeout is None
                else _INTERVAL(16, timeout.seconds * 1_000_000 + timeout.microseconds, timeout.days, 0),
                self._text(job.concurrency_key),
                NULL if job.concurrency_limit is None else _INT4(4, job.concurrency_limit),
            )
        )

    def _labels(self, job: NewJob | PlainJob) -> bytes:
        """tags, meta, expires_at."""
        if job.tags:
            tags = frame(TEXT_OID, len(job.tags), False, b"".join(self._text(tag) for tag in job.tags))
            tags = _LENGTH(len(tags)) + tags
        else:
            tags = _NO_TAGS
        expires = NULL if job.expires_at is None else _instant(job.expires_at)
        return tags + _json(json.dumps(job.meta)) + expires


def ahead(jobs: Iterator[NewJob | PlainJob], count: int) -> list[NewJob | PlainJob]:
    """The first jobs of a COPY of ``count``, built while the server reserves their ids: a tenth of them (building a
    quarter or a half ahead gained nothing in calls of 1,000 plain items, measured 2026-12-01)."""
    return list(itertools.islice(jobs, count // 10 + 1))


def copy_blocks(
    ids: Sequence[int],
    jobs: Iterable[NewJob | PlainJob],
    *,
    now: datetime,
    defaults: Defaults,
    labelled: bool,
    encoding: str,
) -> Iterator[bytes]:
    """The binary COPY data of ``copy_statement(labelled)`` for these jobs, in blocks of about
    ``COPY_BLOCK_BYTES``, each row encoded as ``jobs`` yields its job (an exception it raises comes out of
    this iterator). ``now``: the due time of a job without one; ``encoding``: the connection's, for text."""
    rows = _CopyRows(now, defaults, labelled, encoding)
    block = bytearray(_HEADER)
    for job_id, job in zip(ids, jobs, strict=True):
        block += rows.row(job_id, job)
        if len(block) >= COPY_BLOCK_BYTES:
            yield bytes(block)
            block.clear()
    block += _TRAILER
    yield bytes(block)


def copy_row(job_id: int, job: NewJob, now: datetime, defaults: Defaults, labelled: bool) -> tuple[Any, ...]:
    queue, priority, attempts = _filled(job, defaults)
    row = (
        job_id,
        job.task,
        args(job),
        queue,
        priority,
        job.run_at or now,
        attempts,
        job.timeout,
        job.concurrency_key,
        job.concurrency_limit,
    )
    return (*row, list(job.tags), Jsonb(job.meta), job.expires_at) if labelled else row


def ids_in_order(ids: Sequence[int], jobs: Sequence[NewJob], by_key: Mapping[str, int]) -> list[int]:
    """Each job's id: its own reserved id without a run key, else the id of the job holding its key."""
    return [job_id if job.run_key is None else by_key[job.run_key] for job_id, job in zip(ids, jobs, strict=True)]


def cacheable(jobs: Sequence[NewJob]) -> list[str]:
    """The run keys a cache may answer: not those of a replacing enqueue (the holder must take the new args)."""
    return list(dict.fromkeys(j.run_key for j in jobs if j.run_key is not None and j.on_conflict == "existing"))


def holders_params(hints: Mapping[str, int], now: datetime | None) -> dict[str, Any]:
    return {"run_keys": list(hints), "now": now}


def still_held(hints: Mapping[str, int], rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The cache's hints that PostgreSQL confirms: the job with that id holds that run key over its scope now."""
    held = {(r["id"], r["run_key"]) for r in rows}
    return {key: job_id for key, job_id in hints.items() if (job_id, key) in held}


def merged(jobs: Sequence[NewJob], known: Mapping[str, int], fresh_ids: Sequence[int]) -> list[int]:
    """Ids in the order of ``jobs``: a verified cache hit's id, else the next id of the fresh insert."""
    fresh = iter(fresh_ids)
    return [known[j.run_key] if j.run_key is not None and j.run_key in known else next(fresh) for j in jobs]


def learned(fresh: Sequence[NewJob], ids: Sequence[int]) -> dict[str, int]:
    return {j.run_key: job_id for j, job_id in zip(fresh, ids, strict=True) if j.run_key is not None}


def list_query(tags: Sequence[str] | None, meta: Mapping[str, Any] | None) -> Any:
    """With a tag or meta filter, the list read through the partial index of labelled jobs."""
    return query("job_list_labelled") if tags or meta else query("job_list")


def list_params(
    state: JobState | str | None,
    queue: str | None,
    task: str | None,
    before_id: int | None,
    limit: int,
    tags: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "state": str(state) if state else None,
        "queue": queue,
        "task": task,
        "before_id": before_id,
        "limit": limit,
        "tags": list(tags or ()),
        "meta": Jsonb(dict(meta or {})),
    }


def replaces(jobs: Sequence[NewJob]) -> bool:
    """Whether the insert may update a holder not yet started (on_conflict replace): a row that a concurrent claim,
    finish or cancel can move to another partition under it, so it goes through db.execute_moving."""
    return any(j.run_key is not None and j.on_conflict == "replace" for j in jobs)
