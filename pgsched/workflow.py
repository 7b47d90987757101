"""Workflow shapes (chain, group with callback, DAG, batch) as plain data, compiled to steps and edges.

A leaf module: no I/O. A shape becomes a ``Workflow``: nodes in creation order, each depending
only on earlier nodes, so a graph is acyclic by construction. Creating one is the app's job
(``Workflow.enqueue`` goes through the ``WorkflowStarter`` it was given).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from pgsched.errors import ValidationError

__all__ = [
    "POLICIES",
    "Dag",
    "Edge",
    "Group",
    "Node",
    "Policy",
    "Started",
    "Step",
    "Workflow",
    "WorkflowStarter",
    "batch",
    "chain",
    "group",
]

Policy = Literal["cancel", "run", "failed"]
POLICIES: frozenset[str] = frozenset({"cancel", "run", "failed"})
_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_STEPS = 100_000


@dataclass(frozen=True, slots=True)
class Step:
    """One job of a workflow: a task, its arguments and its enqueue options (``task.s(...)``)."""

    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    on_failure: Policy = "cancel"
    results_arg: str | None = None

    def set(self, **options: Any) -> Step:
        """Enqueue options for this step (queue, priority, max_attempts, timeout, delay, ...)."""
        if "run_key" in options:
            raise ValidationError("run_key", "workflow steps take no run key")
        return replace(self, options={**self.options, **options})

    def receiving(self, arg: str = "results") -> Step:
        """On release, pass the results of the step's dependencies (a list, in order) as keyword ``arg``."""
        if not isinstance(arg, str) or not _ARG_RE.fullmatch(arg):
            raise ValidationError("receive", f"must be an identifier (the keyword that gets the results), got {arg!r}")
        return replace(self, results_arg=arg)

    def if_dependency_fails(self, policy: Policy) -> Step:
        """What a dead or cancelled dependency does to this step: cancel it (default) or run it anyway."""
        return replace(self, on_failure=_policy(policy))


@dataclass(frozen=True, slots=True)
class Edge:
    depends_on: int
    on_failure: Policy


@dataclass(frozen=True, slots=True)
class Node:
    step: Step
    edges: tuple[Edge, ...] = ()


@dataclass(frozen=True, slots=True)
class Started:
    """A created workflow: its id and the job id of every node, in node order."""

    id: int
    job_ids: tuple[int, ...]

    def __getitem__(self, node: int) -> int:
        return self.job_ids[node]


class WorkflowStarter(Protocol):
    def start_workflow(self, workflow: Workflow, *, conn: Any = None) -> Started: ...

    async def start_workflow_async(self, workflow: Workflow, *, conn: Any = None) -> Started: ...


def _policy(value: object) -> Policy:
    if not isinstance(value, str) or value not in POLICIES:
        raise ValidationError("on_failure", f"must be one of cancel, run, failed; got {value!r}")
    return value  # type: ignore[return-value]


class Workflow:
    """Nodes in creation order; ``add`` returns a node's index, which later nodes depend on."""

    def __init__(self, kind: str = "dag", name: str = "", *, starter: WorkflowStarter | None = None) -> None:
        if not isinstance(name, str) or len(name) > 200:
            raise ValidationError("name", "must be a string of at most 200 characters")
        self.kind = kind
        self.name = name
        self.nodes: list[Node] = []
        self._starter = starter

    def add(self, step: Step, after: Iterable[int | tuple[int, Policy]] = ()) -> int:
        """Add ``step`` after the given nodes (``(node, policy)`` sets that edge's policy); returns its node."""
        if not isinstance(step, Step):
            raise ValidationError("step", f"must be a Step (task.s(...)), got {type(step).__name__}")
        if len(self.nodes) >= MAX_STEPS:
            raise ValidationError("steps", f"a workflow holds at most {MAX_STEPS} steps")
        edges: dict[int, Edge] = {}
        for item in after:
            node, policy = item if isinstance(item, tuple) else (item, step.on_failure)
            if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < len(self.nodes):
                raise ValidationError("after", f"node {node!r} is not an earlier step of this workflow")
            edges[node] = Edge(node, _policy(policy))
        policies = {edge.on_failure for edge in edges.values()}
        if "failed" in policies and len(policies) > 1:
            raise ValidationError("after", "policy failed applies to every dependency of a step, or to none")
        self.nodes.append(Node(step, tuple(edges.values())))
        return len(self.nodes) - 1

    def bind(self, starter: WorkflowStarter) -> Workflow:
        self._starter = starter
        return self

    def enqueue(self, *, conn: Any = None) -> Started:
        """Create every step in one transaction (the caller's, with ``conn``)."""
        return self._require_starter().start_workflow(self, conn=conn)

    async def enqueue_async(self, *, conn: Any = None) -> Started:
        return await self._require_starter().start_workflow_async(self, conn=conn)

    def _require_starter(self) -> WorkflowStarter:
        if self._starter is None:
            raise RuntimeError(
                "this workflow is not attached to a Pgsched app (build it with app.chain/group/dag/batch)"
            )
        return self._starter


class Dag(Workflow):
    """A graph declared step by step: ``a = dag.add(x.s()); dag.add(y.s(), after=[a])``."""

    def __init__(self, name: str = "", *, starter: WorkflowStarter | None = None) -> None:
        super().__init__("dag", name, starter=starter)


def chain(*steps: Step, name: str = "", starter: WorkflowStarter | None = None) -> Workflow:
    """a -> b -> c: each step waits for the one before."""
    wf = Workflow("chain", name, starter=starter)
    previous: list[int] = []
    for step in steps:
        previous = [wf.add(step, after=previous)]
    return wf


class Group:
    """Steps that run side by side; ``then(callback)`` runs the callback once all of them have ended."""

    def __init__(self, steps: Sequence[Step], *, name: str = "", starter: WorkflowStarter | None = None) -> None:
        self.workflow = Workflow("group", name, starter=starter)
        self.members = [self.workflow.add(step) for step in steps]

    def then(self, callback: Step, *, receive: str | None = "results") -> Workflow:
        """The chord: the callback waits for every member and, unless ``receive`` is None, gets their results."""
        step = callback.receiving(receive) if receive is not None and callback.results_arg is None else callback
        self.workflow.add(step, after=self.members)
        return self.workflow

    def enqueue(self, *, conn: Any = None) -> Started:
        return self.workflow.enqueue(conn=conn)

    async def enqueue_async(self, *, conn: Any = None) -> Started:
        return await self.workflow.enqueue_async(conn=conn)


def group(*steps: Step, name: str = "", starter: WorkflowStarter | None = None) -> Group:
    return Group(steps, name=name, starter=starter)


def batch(
    steps: Sequence[Step],
    *,
    on_success: Step | None = None,
    on_failure: Step | None = None,
    on_complete: Step | None = None,
    name: str = "",
    starter: WorkflowStarter | None = None,
) -> Workflow:
    """Independent jobs with callbacks: on_success if all succeed, on_failure if any fails, on_complete always.
    Progress: ``pgsched.workflow_status`` (or ``app.workflow(id)``)."""
    if not steps:
        raise ValidationError("steps", "a batch needs at least one step")
    wf = Workflow("batch", name, starter=starter)
    members = [wf.add(step) for step in steps]
    callbacks: list[tuple[Step | None, Policy]] = [(on_success, "cancel"), (on_failure, "failed"), (on_complete, "run")]
    for callback, policy in callbacks:
        if callback is not None:
            wf.add(callback, after=[(m, policy) for m in members])
    return wf
