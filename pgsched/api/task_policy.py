"""Which scope creating, scheduling or retrying a job of a given task needs, beyond the endpoint's own.

Interface layer. ``pgsched.shell`` needs ``admin``: its jobs run commands on worker hosts (within
each worker's allowlist). ``pgsched.http`` stays at ``write``, like any task: a worker calls only
the ``host:port`` targets its operator allowlisted and keeps a capped answer. The workers enforce
their allowlists whoever enqueued a job; this check keeps a write token from choosing the commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.requests import Request

from pgsched.api.auth import authorize
from pgsched.api.errors import ApiError
from pgsched.api.state import api_state
from pgsched.builtins import SHELL_TASK
from pgsched.token_store import Scope

__all__ = ["TASK_SCOPES", "authorize_dead_retry", "authorize_task"]

TASK_SCOPES: Mapping[str, Scope] = {SHELL_TASK: Scope.ADMIN}


async def authorize_task(request: Request, tasks: str | Iterable[str]) -> None:
    """403 naming the task unless the caller holds the scope every task in ``tasks`` needs."""
    for task in sorted({tasks} if isinstance(tasks, str) else set(tasks)):
        needed = TASK_SCOPES.get(task)
        if needed is None:
            continue
        try:
            await authorize(request, needed)
        except ApiError as exc:
            if exc.status != 403:
                raise
            message = f"creating, scheduling or retrying {task} jobs needs the {needed} scope"
            raise ApiError(403, "forbidden", message, field="task") from None


async def authorize_dead_retry(request: Request, *, queue: str | None, task: str | None) -> None:
    """As ``authorize_task`` for a bulk retry of dead jobs: checks the gated tasks that have dead jobs in it."""
    if task is not None:
        return await authorize_task(request, task)
    operator = api_state(request).operator
    present = [name for name in TASK_SCOPES if await operator.job_list(state="dead", queue=queue, task=name, limit=1)]
    return await authorize_task(request, present)
