from __future__ import annotations

import re

import psycopg
import pytest

from pgsched.queries import all_queries, query

_PARAM_RE = re.compile(r"%\((\w+)\)[sb]")  # %(name)b: sent in binary


def test_every_named_query_prepares_against_the_migrated_schema(dsn: str) -> None:
    queries = all_queries()
    assert queries, "no queries found in sql/"
    with psycopg.connect(dsn, autocommit=True) as c:
        for q in queries.values():
            if q.text.lstrip().upper().startswith(("COPY", "CREATE", "SELECT PG_ADVISORY")):
                continue  # COPY and DDL cannot be PREPAREd; the migration and bulk tests run them
            # Every parameter is cast in the text, so "unknown" placeholders type-check in PREPARE.
            text = _PARAM_RE.sub("NULL", q.text).replace("%%", "%")
            c.execute(f"PREPARE pgsched_check AS {text}")  # type: ignore[arg-type]
            c.execute("DEALLOCATE pgsched_check")


def test_every_parameter_is_cast() -> None:
    for q in all_queries().values():
        for match in re.finditer(r"%\(\w+\)[sb](?!::)", q.text):
            pytest.fail(f"{q.name}: parameter {match.group(0)} has no ::type cast")


def test_an_unknown_query_name_fails_loudly() -> None:
    with pytest.raises(KeyError, match="no SQL query named"):
        query("job_does_not_exist")
