"""A task app for a real `pgsched worker` process with PGSCHED_OTEL=1: its SDK writes each finished span as a
JSON line to $PGSCHED_TEST_SPANS (an application's own exporter; the test reads the file)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from pgsched import Pgsched


class FileExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(os.environ["PGSCHED_TEST_SPANS"], "a") as f:
            for span in spans:
                parent = f"{span.parent.span_id:016x}" if span.parent else None
                line = {"name": span.name, "trace": f"{span.context.trace_id:032x}", "parent": parent}
                f.write(json.dumps({**line, "span": f"{span.context.span_id:016x}"}) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)

app = Pgsched.from_env()  # PGSCHED_OTEL=1: traced with the global provider set above


@app.task
async def greet(name: str) -> str:
    return f"hello {name}"
