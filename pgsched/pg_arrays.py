"""One-dimensional arrays in PostgreSQL's binary format (what ``array_recv`` reads: dimensions, a has-nulls flag, the
element type, then each element's length and value), built in one pass per array: the one home of that framing,
for statement parameters here and for the COPY rows of ``pgsched.enqueue_rows`` (``frame``).

psycopg's list dumper finds and calls a Python dumper for every element: about 1 µs an element on the 2-core test
VM, so the eight arrays of a 300-job finish batch cost 2.5 ms of the worker's CPU (8 µs a job, about a third of a
worker's CPU per no-op job). ``Int8Array.of(values)`` and its siblings hold the values; their dumpers encode them
with one C-level pack per element (text in the connection's encoding, each distinct value once).

Use them in binary placeholders (``%(ids)b::bigint[]``). A fixed-width array may not hold None (``struct.error``);
a text array may (SQL NULL).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import repeat
from typing import Any, ClassVar, Self

import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

__all__ = ["NULL", "TEXT_OID", "BoolArray", "Float8Array", "Int4Array", "Int8Array", "TextArray", "frame"]

TEXT_OID = 25
NULL = struct.pack(">i", -1)  # an element's (or a COPY field's) length when it is NULL
_HEADER = struct.Struct(">iiIii")  # ndim 1, has-nulls flag, element oid, length, lower bound 1
_EMPTY = struct.Struct(">iiI")  # ndim 0, no flags, element oid
_LENGTH = struct.Struct(">i")
_BOOLS = (b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x01\x01")  # (length, value) of false, of true


def frame(element_oid: int, count: int, has_null: bool, elements: bytes) -> bytes:
    """A one-dimensional array of ``count`` elements (each already its length and bytes); no dimension when empty."""
    if not count:
        return _EMPTY.pack(0, 0, element_oid)
    return _HEADER.pack(1, int(has_null), element_oid, count, 1) + elements


class _Array:
    """Values to send as one array parameter; ``encode`` makes its binary form."""

    __slots__ = ("values",)
    element_oid: ClassVar[int]
    array_oid: ClassVar[int]

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    @classmethod
    def of(cls, values: Sequence[Any]) -> Self:
        return cls(values)

    def encode(self, encoding: str) -> bytes:
        raise NotImplementedError


class _Fixed(_Array):
    """Packed at once (no encoding to wait for): a None among the values fails here, at the caller."""

    __slots__ = ("_data",)
    element: ClassVar[struct.Struct]  # (length, value) of one element

    def __init__(self, values: Sequence[Any]) -> None:
        super().__init__(values)
        pack, size = self.element.pack, self.element.size - 4
        self._data = frame(self.element_oid, len(values), False, b"".join(map(pack, repeat(size), values)))

    def encode(self, encoding: str) -> bytes:
        return self._data


class Int8Array(_Fixed):
    __slots__ = ()
    element_oid, array_oid = 20, 1016
    element = struct.Struct(">iq")


class Int4Array(_Fixed):
    __slots__ = ()
    element_oid, array_oid = 23, 1007
    element = struct.Struct(">ii")


class Float8Array(_Fixed):
    __slots__ = ()
    element_oid, array_oid = 701, 1022
    element = struct.Struct(">id")


class BoolArray(_Array):
    __slots__ = ()
    element_oid, array_oid = 16, 1000

    def encode(self, encoding: str) -> bytes:
        return frame(self.element_oid, len(self.values), False, b"".join(map(_BOOLS.__getitem__, self.values)))


class TextArray(_Array):
    __slots__ = ()
    element_oid, array_oid = TEXT_OID, 1009

    def encode(self, encoding: str) -> bytes:
        values = self.values
        chunks = {value: _text(value, encoding) for value in set(values)}  # each distinct value (an outcome) once
        return frame(self.element_oid, len(values), None in chunks, b"".join(map(chunks.__getitem__, values)))


def _text(value: str | None, encoding: str) -> bytes:
    if value is None:
        return NULL
    data = value.encode(encoding)
    return _LENGTH.pack(len(data)) + data


def _dumper(kind: type[_Array]) -> type[Dumper]:
    class _ArrayDumper(Dumper):
        # The class's oid stays 0: psycopg registers a dumper with a fixed oid as the one for that type too
        # (COPY's set_types would then hand it plain lists). Each instance names its array type.
        format = Format.BINARY

        def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
            super().__init__(cls, context)
            self.oid = kind.array_oid
            self._encoding = self.connection.info.encoding if self.connection is not None else "utf-8"

        def dump(self, obj: _Array) -> bytes:
            return obj.encode(self._encoding)

    return _ArrayDumper


_KINDS: tuple[type[_Array], ...] = (Int8Array, Int4Array, Float8Array, BoolArray, TextArray)
for _kind in _KINDS:
    psycopg.adapters.register_dumper(_kind, _dumper(_kind))
