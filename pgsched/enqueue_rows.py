"""The rows and parameters of an enqueue: what the job store sends for one job, a keyed batch or a COPY
(with each task's declared defaults filled in), and how a cache's verified hints merge with a fresh
insert's ids. Also the parameters of the job list.

Pure: it builds values for ``store`` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from pgsched.job import JobState, NewJob
from pgsched.queries import query

__all__ = [
    "Defaults",
    "args",
    "cacheable",
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
    "reserved_defaults",
    "resolved",
    "still_held",
    "unresolved",
]

_COPY_TYPES = ["int8", "text", "jsonb", "text", "int2", "timestamptz", "int4", "interval", "text", "int4"]
_LABEL_TYPES = ["text[]", "jsonb", "timestamptz"]


def _as_is(text: str) -> str:
    return text


def args(job: NewJob) -> Jsonb:
    """The job's args for psycopg, reusing the JSON text validation already produced."""
    return Jsonb(job.args) if job.args_json is None else Jsonb(job.args_json, dumps=_as_is)


def insert_query(job: NewJob) -> Any:
    """The one-job statement: a plain insert without a run key, the take-then-insert statement with one."""
    return query("job_insert") if job.run_key is None else query("job_insert_keyed")


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


def resolved(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, int, int]]:
    return {r["name"]: (r["queue"], r["priority"], r["max_attempts"]) for r in rows}


def reserved_defaults(row: Mapping[str, Any]) -> dict[str, tuple[str, int, int]]:
    """The defaults that job_ids_reserve returned with the ids (parallel arrays, NULL for no names), by task name."""
    if row["names"] is None:
        return {}
    return dict(zip(row["names"], zip(row["queues"], row["priorities"], row["max_attempts"], strict=True), strict=True))


def _filled(job: NewJob, defaults: Defaults) -> tuple[str | None, int | None, int | None]:
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


def copy_statement(labelled: bool) -> tuple[Any, list[str]]:
    """The COPY statement and its column types, with the label columns or without."""
    if labelled:
        return query("job_copy_labelled"), _COPY_TYPES + _LABEL_TYPES
    return query("job_copy"), _COPY_TYPES


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
