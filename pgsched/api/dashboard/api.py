"""The dashboard's own read and bulk-action endpoints, under ``/dashboard/api/``.

Interface layer over ``DashboardStore`` (lists, counts, chart history) and ``AsyncJobStore`` (actions).
Every read costs what it shows: keyset pages on an index, capped counts, the leader's per-minute
rollup for charts. Reads need the read scope, bulk actions the write scope, like /jobs.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from pgsched.api.auth import authorize, protected
from pgsched.api.errors import ApiError
from pgsched.api.state import api_state
from pgsched.api.validation import BIGINT_MAX, page_limit, query_filters, read_object
from pgsched.dashboard_store import ARGS_SEARCH_SPAN, VIEWS, DashboardStore
from pgsched.errors import PgschedError
from pgsched.job_input import parse_datetime
from pgsched.token_store import Scope

__all__ = ["BULK_MAX", "RETRYING_CAP", "WINDOWS", "routes"]

BULK_MAX = 100
RETRYING_CAP = 1000
# Chart window -> (span, bucket seconds): minute rows for the last hour, hour rows beyond.
WINDOWS = {"1h": (timedelta(hours=1), 60), "24h": (timedelta(hours=24), 3600), "7d": (timedelta(days=7), 3600)}
_ACTIONS = ("retry", "cancel", "delete")


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message, field=field)


def _storable(text: str) -> bool:
    """PostgreSQL text and jsonb hold no NUL and no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text and "\\u0000" not in text


def _store(request: Request) -> DashboardStore:
    return DashboardStore(api_state(request).pool)


def _encode(key: tuple[Any, int]) -> str:
    at, last_id = key
    text = json.dumps([at.isoformat() if isinstance(at, datetime) else at, last_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(raw: str | None) -> tuple[Any, int] | None:
    if not raw:
        return None
    try:
        at, last_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 < last_id <= BIGINT_MAX:
            raise ValueError("id")
        return (parse_datetime(at, "cursor") if at is not None else None), last_id
    except (ValueError, TypeError, binascii.Error, PgschedError):
        raise _bad("cursor", "malformed cursor: pass next_cursor of the previous page") from None


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}


def _sort_key(view: str, r: dict[str, Any]) -> tuple[Any, int]:
    column = {"running": "started_at", "available": "run_at", "scheduled": "run_at", "retrying": "run_at"}
    at = r.get(column.get(view, "finished_at")) if view not in {"all", "search"} else None
    return at, int(r["id"])


async def whoami(request: Request) -> Response:
    """The caller's scope, so the page shows only the actions it may take."""
    if not api_state(request).settings.api_auth_enabled:
        return JSONResponse({"scope": str(Scope.ADMIN), "auth": False})
    for scope in (Scope.ADMIN, Scope.WRITE, Scope.READ):
        try:
            await authorize(request, scope)
        except ApiError as exc:
            if exc.status != 403:
                raise
            continue
        return JSONResponse({"scope": str(scope), "auth": True})
    raise ApiError(403, "forbidden", "this token holds no scope")


async def list_jobs(request: Request) -> Response:
    """?view= all|available|scheduled|retrying|running|succeeded|dead|cancelled, &args= JSON containment."""
    state = api_state(request)
    params = request.query_params
    view = params.get("view") or "all"
    if view not in VIEWS:
        raise _bad("view", f"view must be one of {', '.join(sorted(VIEWS))}")
    limit = page_limit(request, default=50, maximum=state.settings.api_max_page_size)
    filters = query_filters(request, with_state=False)
    after = _decode(params.get("cursor"))
    args = params.get("args") or None
    labels = {key: filters.pop(key) for key in ("tags", "meta") if key in filters}
    if labels and args is None:
        before_id = after[1] if after else None
        rows = await state.reads.read(
            lambda s: s.dashboard.dashboard_jobs_labelled(before_id=before_id, limit=limit + 1, **filters, **labels)
        )
        view = "search"
    elif args is not None:
        try:
            if not _storable(args) or not isinstance(json.loads(args), dict):
                raise ValueError
        except ValueError:
            raise _bad("args", 'args must be a JSON object, e.g. {"user_id": 42}') from None
        before_id = after[1] if after else None
        rows = await state.reads.read(
            lambda s: s.dashboard.dashboard_jobs_matching(args, before_id=before_id, limit=limit + 1, **filters)
        )
        view = "search"
    else:
        worker = params.get("worker")
        if worker is not None and not (worker.isascii() and worker.isdigit() and len(worker) < 19):
            raise _bad("worker", "worker must be a worker id")
        worker_id, now = int(worker) if worker else None, state.clock.db_now()
        rows = await state.reads.read(
            lambda s: s.dashboard.dashboard_jobs(
                view, after=after, limit=limit + 1, worker_id=worker_id, now=now, **filters
            )
        )
    page = rows[:limit]
    cursor = _encode(_sort_key(view, page[-1])) if len(rows) > limit else None
    body: dict[str, Any] = {"items": [_row(r) for r in page], "next_cursor": cursor}
    if view == "search":
        body["searched_newest"] = ARGS_SEARCH_SPAN
    return JSONResponse(body)


async def find_run_key(request: Request) -> Response:
    key = request.query_params.get("run_key") or ""
    if not key or len(key) > 512 or not _storable(key):
        raise _bad("run_key", "give a run key of 1 to 512 characters")
    found = await _store(request).dashboard_job_by_run_key(key)  # the primary: a client looks up what it just wrote
    if found is None:
        raise ApiError(404, "not_found", f"no job holds run key {key[:80]!r}", field="run_key")
    return JSONResponse({"id": found})


async def counts(request: Request) -> Response:
    """Counts /queues does not give: queued jobs that failed before (capped)."""
    n = await api_state(request).reads.read(lambda s: s.dashboard.dashboard_retrying_count(RETRYING_CAP))
    return JSONResponse({"retrying": min(n, RETRYING_CAP), "retrying_capped": n > RETRYING_CAP})


async def stats(request: Request) -> Response:
    state = api_state(request)
    window = request.query_params.get("window") or "1h"
    if window not in WINDOWS:
        raise _bad("window", f"window must be one of {', '.join(WINDOWS)}")
    span, bucket = WINDOWS[window]
    filters = query_filters(request, with_state=False)
    now = state.clock.now()
    start = (now - span).replace(second=0, microsecond=0)
    since = start.replace(minute=0) if bucket == 3600 else start
    until = now + timedelta(minutes=1)
    rows = await state.reads.read(
        lambda s: s.dashboard.dashboard_job_stats(since, until, hourly=bucket == 3600, **filters)
    )
    return JSONResponse({"window": window, "bucket_seconds": bucket, "since": since.isoformat(),
                         "points": [_row(r) for r in rows]})  # fmt: skip


async def _act(request: Request, action: str, job_id: int) -> str:
    state = api_state(request)
    if action == "retry":
        await state.operator.job_retry(job_id)
        return "queued"
    if action == "cancel":
        return str(await state.operator.job_cancel(job_id))
    if not await state.jobs.job_delete(job_id):
        raise ApiError(409, "invalid_state", "only a finished job can be deleted")
    return "deleted"


async def bulk(request: Request) -> Response:
    """{"action": "retry"|"cancel"|"delete", "ids": [...]}: each id is done alone; the answer says how each went."""
    body = await read_object(request)
    action, ids = body.get("action"), body.get("ids")
    if set(body) - {"action", "ids"}:
        raise ApiError(
            422, "invalid_field", "unknown field (action, ids)", field=sorted(set(body) - {"action", "ids"})[0]
        )
    if action not in _ACTIONS:
        raise ApiError(422, "invalid_field", f"action must be one of {', '.join(_ACTIONS)}", field="action")
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= BULK_MAX
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= BIGINT_MAX for i in ids)
    ):
        raise ApiError(422, "invalid_field", f"ids must be 1 to {BULK_MAX} job ids", field="ids")
    done: dict[int, str] = {}
    failed: dict[int, str] = {}
    for job_id in dict.fromkeys(ids):
        try:
            done[job_id] = await _act(request, str(action), job_id)
        except (PgschedError, ApiError) as exc:
            failed[job_id] = exc.message if isinstance(exc, ApiError) else str(exc)
    return JSONResponse({"action": action, "done": done, "failed": failed})


# One Mount, so a wrong method gets 405 with its Allow header here, not from the static files' mount.
routes = [
    Mount(
        "/dashboard/api",
        routes=[
            Route("/whoami", whoami, methods=["GET"]),
            Route("/jobs", protected(Scope.READ)(list_jobs), methods=["GET"]),
            Route("/run-key", protected(Scope.READ)(find_run_key), methods=["GET"]),
            Route("/counts", protected(Scope.READ)(counts), methods=["GET"]),
            Route("/stats", protected(Scope.READ)(stats), methods=["GET"]),
            Route("/jobs/bulk", protected(Scope.WRITE)(bulk), methods=["POST"]),
        ],
    )
]
