"""``pgsched workflows list|show|cancel``: workflows with their progress and steps.

Interface layer: human tables by default, ``--json`` for scripts; a missing workflow exits 2 with one line.
"""

from __future__ import annotations

from typing import Any

import click

from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cli.stores import CliStores, with_stores
from pgsched.errors import WorkflowNotFound
from pgsched.workflow_store import WorkflowInfo, WorkflowStep

__all__ = ["workflows"]

WORKFLOW_ID = click.IntRange(1, 2**63 - 1)
_STATES = click.Choice(["running", "failed", "cancelled", "finished", "empty"])
_COLUMNS = ["id", "state", "kind", "name", "progress", "created_at"]
_STEP_COLUMNS = ["id", "state", "task", "queue", "after", "attempt", "duration", "error"]


def _row(info: WorkflowInfo) -> dict[str, Any]:
    ended = info.succeeded + info.dead + info.cancelled
    return {
        **info.to_dict(),
        "progress": f"{ended}/{info.steps}",
        "created_at": f"{info.created_at:%Y-%m-%d %H:%M:%S%z}",
    }


def _step_row(step: WorkflowStep) -> dict[str, Any]:
    return {
        "id": step.id,
        "state": step.state,
        "task": step.task,
        "queue": step.queue,
        "after": ",".join(str(d) for d in step.depends_on) or "-",
        "attempt": f"{step.attempt}/{step.max_attempts}",
        "duration": "-" if step.duration_seconds is None else f"{step.duration_seconds:.3f}s",
        "error": (step.last_error or "-")[:60],
    }


@cli.group()
def workflows() -> None:
    """Inspect and cancel workflows (chains, groups, DAGs, batches)."""


@workflows.command("list")
@click.option("--state", type=_STATES, help="Only workflows in this overall state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", type=WORKFLOW_ID, help="Only workflows with a smaller id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def workflows_list(ctx: CliContext, state: str | None, limit: int, before: int | None, as_json: bool) -> None:
    """List workflows, newest first, with their progress."""

    async def fetch(s: CliStores) -> list[WorkflowInfo]:
        return await s.workflows.workflow_list(state=state, before_id=before, limit=limit)

    rows = with_stores(ctx.settings, fetch)
    if as_json:
        more = len(rows) == limit
        echo_json({"items": [w.to_dict() for w in rows], "next_before": rows[-1].id if rows and more else None})
    else:
        echo_table([_row(w) for w in rows], _COLUMNS, empty="(no workflows)")


@workflows.command("show")
@click.argument("workflow_id", type=WORKFLOW_ID)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def workflows_show(ctx: CliContext, workflow_id: int, as_json: bool) -> None:
    """Show a workflow and every step (creation order: each after the steps it waits for)."""

    async def fetch(s: CliStores) -> tuple[WorkflowInfo | None, list[WorkflowStep]]:
        return await s.workflows.workflow_get(workflow_id), await s.workflows.workflow_steps_get(workflow_id)

    info, steps = with_stores(ctx.settings, fetch)
    if info is None:
        raise WorkflowNotFound(workflow_id)
    if as_json:
        echo_json({**info.to_dict(), "items": [s.to_dict() for s in steps]})
        return
    row = _row(info)
    click.echo(f"workflow {info.id} {info.name!r} ({info.kind}): {info.state}, {row['progress']} steps ended")
    click.echo(
        f"  waiting {info.waiting}, queued {info.queued}, running {info.running}, "
        f"succeeded {info.succeeded}, dead {info.dead}, cancelled {info.cancelled}"
    )
    echo_table([_step_row(s) for s in steps], _STEP_COLUMNS, empty="(no steps left)")


@workflows.command("cancel")
@click.argument("workflow_id", type=WORKFLOW_ID)
@pass_ctx
def workflows_cancel(ctx: CliContext, workflow_id: int) -> None:
    """Cancel every unfinished step (running steps are signalled and stop soon)."""

    async def act(s: CliStores) -> int:
        return await s.workflows.workflow_cancel(workflow_id)

    n = with_stores(ctx.settings, act)
    click.echo(f"workflow {workflow_id}: {n} step(s) cancelled or signalled")
