from __future__ import annotations

import re

import psycopg
import pytest

from pgsched.queries import all_queries, query

_PARAM_RE = re.compile(r"%\((\w+)\)[sb]")  # %(name)b: sent in binary
_TAG_RE = re.compile(r"/\* pgsched:(\w+) \*/ ")


def test_every_named_query_prepares_against_the_migrated_schema(dsn: str) -> None:
    queries = all_queries()
    assert queries, "no queries found in sql/"
    with psycopg.connect(dsn, autocommit=True) as c:
        for q in queries.values():
            if _TAG_RE.sub("", q.text).upper().startswith(("COPY", "CREATE", "SELECT PG_ADVISORY")):
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


def test_every_query_is_short_enough_for_psycopg_to_cache_its_conversion() -> None:
    # psycopg converts a query's %(name)s placeholders afresh on every call past this many bytes or 50 parameters
    # (80 us for the claim when its text was 5.2 KB).
    from psycopg import _queries

    for q in all_queries().values():
        assert len(q.text.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH, f"{q.name}: {len(q.text.encode())} bytes"
        assert len(set(_PARAM_RE.findall(q.text))) <= _queries.MAX_CACHED_STATEMENT_PARAMS, q.name


def test_a_query_is_sent_tagged_with_its_name_and_without_its_comments(dsn: str) -> None:
    text = query("job_claim_batch")
    tag = _TAG_RE.match(text)
    assert tag is not None and tag.group(1) == "job_claim_batch"
    assert not any(line.startswith("--") or line != line.lstrip() for line in text.splitlines())
    with psycopg.connect(dsn, autocommit=True) as c, psycopg.connect(dsn, autocommit=True) as watcher:
        c.execute(query("listener_ping"))
        row = watcher.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (c.info.backend_pid,)).fetchone()
        assert row is not None and row[0].startswith("/* pgsched:listener_ping */ ")
