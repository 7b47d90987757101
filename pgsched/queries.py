"""Named SQL queries loaded once from ``sql/*.sql``.

Infra layer: reads files, runs nothing. A block starts with ``-- name: <noun>_<verb>`` and
a one-line ``-- `` description; asking for an unknown name raises at import time.

The text sent is the block without its comment lines and indentation, after a ``/* pgsched:<name> */``
tag: ``pg_stat_activity`` names each statement, and so does ``pg_stat_statements`` on PostgreSQL 15
(18 stores a statement's text from its first token, without the tag). No statement outgrows the 4,096
bytes up to which psycopg caches a query's conversion (the claim, 5.2 KB with its comments, was
converted afresh on every call: about 80 µs before each claim was sent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["Query", "all_queries", "migrations_dir", "query", "sql_dir"]

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z][a-z0-9_]*)\s*$")
_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    """``sql/`` and ``migrations/`` ship inside the wheel; in a checkout they sit at the top level."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"pgsched: cannot find its {name}/ directory next to {_PACKAGE_DIR}")


def sql_dir() -> Path:
    return _resource_dir("sql")


def migrations_dir() -> Path:
    return _resource_dir("migrations")


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    text: str
    source: str


def _parse(path: Path) -> list[Query]:
    found: list[Query] = []
    name: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if name is None:
            return
        body = list(lines)
        description = ""
        if body and body[0].startswith("--"):
            description = body.pop(0).lstrip("-").strip()
        text = "\n".join(line.strip() for line in body if not line.lstrip().startswith("--")).strip().rstrip(";")
        if not description or not text:
            raise RuntimeError(f"{path.name}: query {name} needs a description line and a body")
        found.append(Query(name, description, f"/* pgsched:{name} */ {text}", path.name))

    for line in path.read_text().splitlines():
        match = _NAME_RE.match(line)
        if match:
            flush()
            name, lines = match.group(1), []
        elif name is not None:
            lines.append(line)
    flush()
    return found


@cache
def all_queries() -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for path in sorted(sql_dir().glob("*.sql")):
        for q in _parse(path):
            if q.name in queries:
                raise RuntimeError(f"query {q.name} is defined twice ({queries[q.name].source}, {q.source})")
            queries[q.name] = q
    return queries


def query(name: str) -> str:
    """The text of the named query; an unknown name is a programming error."""
    try:
        # The text comes from the package's own files, never from input.
        return all_queries()[name].text
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in {sql_dir()}") from None
