"""What a pool's connections send to PostgreSQL, read from libpq's trace (message names and lengths)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg.pq import Trace
from psycopg_pool import ConnectionPool


@contextlib.contextmanager
def traced(pool: ConnectionPool[Any], trace: Path) -> Iterator[None]:
    """Trace every connection the pool can hand out (opened to its max_size) into ``trace`` while the block runs."""
    with trace.open("w") as out, contextlib.ExitStack() as held:
        conns = [held.enter_context(pool.connection()) for _ in range(pool.max_size)]
        for conn in conns:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        held.close()
        try:
            yield
        finally:
            for conn in conns:
                conn.pgconn.untrace()


def sent(trace: Path) -> list[tuple[str, int]]:
    """The messages the client sent, in order: (name, length)."""
    lines = (line.split() for line in trace.read_text().splitlines())
    return [(fields[2], int(fields[1])) for fields in lines if fields[:1] == ["F"]]
