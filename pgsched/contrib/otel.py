"""OpenTelemetry tracing (the ``pgsched[otel]`` extra): spans for enqueue, claim-to-start and run.

The enqueue span's W3C trace context (``traceparent``, ``tracestate``) travels inside the job, in
``jobs.meta`` under the reserved key ``TRACE_KEY``; the worker's claim and run spans are its children, so one
trace runs from the enqueuer (Python, or REST with an incoming ``traceparent``) through every attempt.
Imported only when tracing is turned on (``instrument(app)``, ``PGSCHED_OTEL=1``): without it pgsched
never imports opentelemetry and does no per-job work for tracing. Metrics stay Prometheus.
Uses the OpenTelemetry API only; the application (or ``opentelemetry-instrument``) sets up the SDK.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pgsched.hooks import Attempt, Hooks, Next
from pgsched.job import NewJob

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["TRACE_KEY", "OtelTracer", "instrument"]

TRACE_KEY = "trace"  # jobs.meta -> 'trace': {"traceparent": ..., "tracestate": ...}; reserved for pgsched
_W3C = TraceContextTextMapPropagator()
_CLAIMS_MAX = 100_000
_SYSTEM = "pgsched"


class _Enqueue:
    def __init__(self, span: trace.Span, jobs: Sequence[NewJob]) -> None:
        self._span = span
        self.jobs = jobs

    def inserted(self, ids: Sequence[int]) -> None:
        if len(ids) == 1:
            self._span.set_attribute("messaging.message.id", str(ids[0]))
        self._span.set_attribute("messaging.batch.message_count", len(ids))


class OtelTracer:
    """A ``pgsched.hooks.Tracer`` over an OpenTelemetry tracer provider (the global one by default)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("pgsched", _version(), tracer_provider=tracer_provider)
        # job id -> (the context it carries, claim time), from the claim until its attempt starts. A claimed
        # job that never starts here (handed back at shutdown) leaves its entry: bounded by _CLAIMS_MAX.
        self._claims: dict[int, tuple[Mapping[str, str] | None, float]] = {}

    def claimed(self, ids: Sequence[int], traces: Mapping[int, Mapping[str, str]], claimed_at: float) -> None:
        if len(self._claims) > _CLAIMS_MAX:
            self._claims.clear()
        for job_id in ids:
            self._claims[job_id] = (traces.get(job_id), claimed_at)

    @contextlib.contextmanager
    def enqueue(self, jobs: Sequence[NewJob], *, parent: Mapping[str, str] | None = None) -> Iterator[_Enqueue]:
        name = f"pgsched enqueue {jobs[0].task}" if len(jobs) == 1 else "pgsched enqueue_many"
        attributes: dict[str, Any] = {"messaging.system": _SYSTEM, "messaging.operation.type": "send"}
        if len(jobs) == 1:
            attributes["pgsched.task"] = jobs[0].task
            if jobs[0].queue is not None:
                attributes["messaging.destination.name"] = jobs[0].queue
        with self._tracer.start_as_current_span(
            name, context=_incoming(parent), kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            _W3C.inject(carrier)  # the current context: this span (nothing when no SDK records it)
            yield _Enqueue(span, [carry(job, carrier) for job in jobs] if carrier else jobs)

    async def run(self, job: Attempt, call: Next) -> Any:
        carried, claimed_at = self._claims.pop(job.id, (None, 0.0))
        parent = _W3C.extract(carried) if carried else None
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "pgsched.task": job.task,
            "pgsched.attempt": job.attempt,
        }
        if claimed_at:
            claim = self._tracer.start_span(
                f"pgsched claim {job.task}",
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=int(claimed_at * 1e9),
            )
            claim.end(end_time=max(time.time_ns(), int(claimed_at * 1e9)))
        with self._tracer.start_as_current_span(
            f"pgsched run {job.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={**attributes, "messaging.operation.type": "process"},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call()
            except BaseException as exc:  # CancelledError too: a cancel, a timeout or a shutdown
                if isinstance(exc, Exception):
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}".rstrip(": ")))
                raise


def carry(job: NewJob, carrier: Mapping[str, str]) -> NewJob:
    """The job with this trace context in its meta (under ``TRACE_KEY``)."""
    return dataclasses.replace(job, meta={**job.meta, TRACE_KEY: dict(carrier)})


def _version() -> str | None:
    try:
        return importlib.metadata.version("pgsched")
    except importlib.metadata.PackageNotFoundError:
        return None


def _incoming(headers: Mapping[str, str] | None) -> Context | None:
    """The parent from incoming headers (``traceparent``); None (the current span) when there is none."""
    if headers is None or not headers.get("traceparent"):
        return None
    return _W3C.extract(headers)


def instrument(target: Hooks | Any, tracer_provider: trace.TracerProvider | None = None) -> OtelTracer:
    """Trace a ``Pgsched`` app's enqueues and its workers' attempts (or a bare ``Hooks``); returns the tracer."""
    hooks: Hooks = target if isinstance(target, Hooks) else target.tasks.hooks
    tracer = OtelTracer(tracer_provider)
    hooks.set_tracer(tracer)
    return tracer
