"""pgsched.pg_arrays: what PostgreSQL reads back is the list given, for every element type, empty or with NULLs."""

from __future__ import annotations

import math
import struct
from typing import Any

import psycopg
import pytest

from pgsched.pg_arrays import BoolArray, Float8Array, Int4Array, Int8Array, TextArray

CASES: list[tuple[Any, str, list[Any]]] = [
    (Int8Array, "bigint[]", [1, -1, 0, 2**63 - 1, -(2**63), 12_345_678_901]),
    (Int4Array, "int[]", [0, 5, -7, 2**31 - 1, -(2**31)]),
    (Float8Array, "float8[]", [0.0, 1.5, -2.25, 1e300, math.inf]),
    (BoolArray, "bool[]", [True, False, False, True]),
    (TextArray, "text[]", ["succeeded", "failed", "succeeded", "", "ünïcødé ✓", '{"a": [1, "b"]}']),
    (TextArray, "text[]", [None, "x", None, None]),
    (TextArray, "text[]", [None]),
]


@pytest.mark.parametrize(("kind", "cast", "values"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_postgres_reads_back_the_values_given(dsn: str, kind: Any, cast: str, values: list[Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for prepared in (False, True):
            row = conn.execute(
                f"SELECT %(a)b::{cast}, cardinality(%(a)b::{cast}), array_ndims(%(a)b::{cast})",
                {"a": kind.of(values)},
                prepare=prepared,
            ).fetchone()
            assert row == (values, len(values), 1)


@pytest.mark.parametrize("kind", [Int8Array, Int4Array, Float8Array, BoolArray, TextArray])
def test_an_empty_array_is_empty(dsn: str, kind: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cast = {Int8Array: "bigint[]", Int4Array: "int[]", Float8Array: "float8[]", BoolArray: "bool[]"}.get(
            kind, "text[]"
        )
        assert conn.execute(f"SELECT %b::{cast}, cardinality(%b::{cast})", [kind.of([])] * 2).fetchone() == ([], 0)


def test_the_parameter_carries_its_array_type(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_typeof(%b)::text, %b::text[]", [Int8Array.of([1]), Int8Array.of([1, 2])])
        assert row.fetchone() == ("bigint[]", ["1", "2"])  # sent as bigint[], then cast by the server


def test_a_fixed_width_array_refuses_none() -> None:
    with pytest.raises(struct.error):
        Int8Array.of([1, None])


def test_copy_by_type_name_still_dumps_plain_lists(dsn: str) -> None:
    """Registering these dumpers leaves psycopg's dumper for the array type as it was (COPY's set_types uses it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (a bigint[], b text[])")
        with conn.cursor().copy("COPY t (a, b) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["bigint[]", "text[]"])
            copy.write_row([[1, 2], ["x", None]])
        assert conn.execute("SELECT a, b FROM t").fetchone() == ([1, 2], ["x", None])


def test_text_is_sent_in_the_connections_encoding(dsn: str) -> None:
    """A session whose client_encoding is not UTF-8 reads non-ASCII text back as given (the server converts from it)."""
    with psycopg.connect(dsn, autocommit=True, options="-c client_encoding=LATIN1") as conn:
        assert conn.info.encoding != "utf-8"
        row = conn.execute("SELECT %b::text[]", [TextArray.of(["café", None, "naïve"])]).fetchone()
        assert row == (["café", None, "naïve"],)
