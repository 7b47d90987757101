"""sql/schema.sql is what the migrations build: a migration that changes the schema regenerates it."""

from __future__ import annotations

import pytest

from tests.support.schema_file import SCHEMA_FILE, dump, pg_dump_for, server_major


def test_schema_file_matches_the_migrated_schema(dsn: str) -> None:
    major = server_major(dsn)
    if pg_dump_for(major) is None:
        pytest.skip(f"no pg_dump of PostgreSQL {major} here")
    if f"(PostgreSQL {major})" not in SCHEMA_FILE.read_text().splitlines()[1]:
        pytest.skip(f"sql/schema.sql was made with another PostgreSQL major than this server's {major}")
    assert dump(dsn) == SCHEMA_FILE.read_text(), "sql/schema.sql is stale: run bin/schema and commit the result"
