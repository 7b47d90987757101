"""OpenTelemetry spans (pgsched[otel]) with the SDK's in-memory exporter, a real worker and real PostgreSQL:
the worker's spans continue the enqueuer's trace, from Python and from REST (an incoming traceparent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pgsched import Pgsched, RetryPolicy, Settings
from pgsched.contrib.otel import TRACE_KEY, instrument
from pgsched.testing import drain_async
from tests.api.conftest import ADMIN_TOKEN, serve_api
from tests.support.waiting import wait_until

Conn = psycopg.Connection[dict[str, Any]]
ROOT = Path(__file__).resolve().parents[2]
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The finished spans of this test. The API's tracer uses the global provider: it is this one."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(PROVIDER)
    assert trace.get_tracer_provider() is PROVIDER
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def traced_app(settings: Settings) -> Pgsched:
    app = Pgsched(settings=settings)

    @app.task(max_attempts=2, retry=RetryPolicy(base_seconds=0.0, jitter=0.0))
    async def greet(name: str, fail_first: bool = False) -> str:
        from pgsched.context import current_job

        with PROVIDER.get_tracer("user").start_as_current_span("inside the task"):
            if fail_first and current_job().attempt == 1:
                raise RuntimeError("first attempt fails")
        return f"hello {name}"

    instrument(app, tracer_provider=PROVIDER)
    return app


async def test_the_worker_spans_continue_the_trace_of_a_python_enqueue(
    settings: Settings, conn: Conn, spans: InMemorySpanExporter
) -> None:
    app = traced_app(settings)
    with PROVIDER.get_tracer("user").start_as_current_span("handle request") as request:
        job_id = await app.enqueue_async("greet", {"name": "ada"})
    [outcome] = await drain_async(app)
    await app.aclose()
    assert outcome.state == "succeeded"

    [enqueue] = named(spans, "pgsched enqueue greet")
    [claim] = named(spans, "pgsched claim greet")
    [run] = named(spans, "pgsched run greet")
    [inner] = named(spans, "inside the task")
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (enqueue, claim, run, inner)} == {trace_id}
    assert enqueue.parent is not None and enqueue.parent.span_id == request.get_span_context().span_id
    assert enqueue.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert claim.parent is not None and claim.parent.span_id == enqueue.context.span_id
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert inner.parent is not None and inner.parent.span_id == run.context.span_id  # the task's own spans nest
    assert enqueue.attributes is not None and enqueue.attributes["messaging.message.id"] == str(job_id)
    assert run.attributes is not None and run.attributes["pgsched.attempt"] == 1
    assert claim.end_time is not None and run.start_time is not None and claim.end_time <= run.start_time
    assert run.status.status_code is StatusCode.UNSET
    row = conn.execute("SELECT meta -> %s ->> 'traceparent' AS tp FROM pgsched.jobs WHERE id = %s", [TRACE_KEY, job_id])
    traceparent = row.fetchone()
    assert traceparent is not None
    assert traceparent["tp"].startswith(f"00-{trace_id:032x}-{enqueue.context.span_id:016x}-")


async def test_each_attempt_is_a_child_of_the_enqueue_and_a_failure_is_recorded(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    app = traced_app(settings)
    await app.enqueue_async("greet", {"name": "bob", "fail_first": True})
    outcomes = await drain_async(app)
    await app.aclose()
    assert [o.state for o in outcomes] == ["succeeded"]
    [enqueue] = named(spans, "pgsched enqueue greet")
    first, second = sorted(named(spans, "pgsched run greet"), key=lambda s: s.start_time or 0)
    for run in (first, second):
        assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert first.status.status_code is StatusCode.ERROR
    assert "first attempt fails" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes is not None and second.attributes["pgsched.attempt"] == 2


async def test_a_rest_enqueue_continues_the_callers_traceparent_into_the_worker(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with serve_api(settings.with_(api_token=ADMIN_TOKEN, otel=True)) as api, api.client() as client:
        headers = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
        one = {"task": "greet", "args": {"name": "eve"}, "allow_unknown_task": True}  # no worker is up yet
        created = client.post("/jobs", json=one, headers=headers)
        many = {"jobs": [{"task": "greet", "args": {"name": "bo"}}], "allow_unknown_task": True}
        batch = client.post("/jobs/batch", json=many, headers=headers)
    assert created.status_code == 201 and batch.status_code == 201, (created.text, batch.text)
    app = traced_app(settings)
    outcomes = await drain_async(app)
    await app.aclose()
    assert [o.state for o in outcomes] == ["succeeded", "succeeded"]

    enqueues = named(spans, "pgsched enqueue greet") + named(spans, "pgsched enqueue_many")
    runs = named(spans, "pgsched run greet")
    assert len(enqueues) == 2 and len(runs) == 2
    for span in enqueues:
        assert span.parent is not None and span.parent.is_remote
        assert f"{span.parent.span_id:016x}" == caller_span
    assert {f"{s.context.trace_id:032x}" for s in enqueues + runs} == {caller_trace}
    assert {s.parent.span_id for s in runs if s.parent} == {s.context.span_id for s in enqueues}


async def test_without_tracing_a_job_carries_no_trace_and_the_worker_makes_no_span(
    settings: Settings, conn: Conn, spans: InMemorySpanExporter
) -> None:
    app = Pgsched(settings=settings)

    @app.task
    async def plain() -> None:
        return None

    job_id = await plain.enqueue_async()
    await drain_async(app)
    await app.aclose()
    assert spans.get_finished_spans() == ()
    row = conn.execute("SELECT meta FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == {"meta": {}}


def test_pgsched_does_not_import_opentelemetry_unless_tracing_is_on(dsn: str) -> None:
    script = (
        "import sys, pgsched, pgsched.worker, pgsched.api.app\n"
        "app = pgsched.Pgsched.from_env()\n"
        "assert app.tasks.hooks.tracer is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'pgsched.contrib.otel'))))\n"
    )
    env = {**os.environ, "PGSCHED_DSN": dsn}
    env.pop("PGSCHED_OTEL", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_turning_tracing_on_without_the_extra_is_a_clear_error(dsn: str) -> None:
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if pgsched[otel] were not installed\n"
        "import pgsched\n"
        "try:\n"
        "    pgsched.Pgsched.from_env()\n"
        "except pgsched.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PGSCHED_DSN": dsn, "PGSCHED_OTEL": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pip install 'pgsched[otel]'" in result.stdout


def test_a_pgsched_worker_process_with_pgsched_otel_continues_the_trace(
    settings: Settings, conn: Conn, dsn: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    app = traced_app(settings)
    with PROVIDER.get_tracer("user").start_as_current_span("handle request") as request:
        job_id = app.enqueue("greet", {"name": "ada"})
    app.close()
    out = tmp_path / "spans.jsonl"
    env = {**os.environ, "PGSCHED_DSN": dsn, "PGSCHED_OTEL": "1", "PGSCHED_TEST_SPANS": str(out)}
    argv = [sys.executable, "-m", "pgsched", "worker", "--app", "tests.otel.worker_app:app", "--no-scheduler"]
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: out.exists() and "pgsched run greet" in out.read_text(), timeout=60)
    finally:
        worker.terminate()
        worker.wait(30)
    state = conn.execute("SELECT state::text FROM pgsched.jobs WHERE id = %s", [job_id]).fetchone()
    assert state == {"state": "succeeded"}
    [enqueue] = named(spans, "pgsched enqueue greet")
    [run] = [json.loads(line) for line in out.read_text().splitlines() if "pgsched run" in line]
    assert run["trace"] == f"{request.get_span_context().trace_id:032x}"
    assert run["parent"] == f"{enqueue.context.span_id:016x}"
