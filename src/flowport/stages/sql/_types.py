"""Column types: the SQL type a user declared, and Arrow values made loadable.

The Field Mapper keeps the SQL type a user asked for (``numeric(10,2)``,
``character varying(100)``) in the Arrow field metadata. Field metadata can
also come from files an origin read, so the text is never pasted into DDL:
it is parsed into a :class:`DeclaredType` and rendered again for the target
vendor; anything unrecognised falls back to the mapping from the Arrow type.
Constraints written after the type (``PRIMARY KEY``, ``NOT NULL``,
``UNIQUE``, literal ``DEFAULT``) are parsed the same way
(:func:`declared_constraints`) and gathered per table in a
:class:`TableConstraints`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY, ColumnConstraints, DefaultValue, split_declared

__all__ = [
    "DeclaredType",
    "KeyConstraint",
    "TableConstraints",
    "declared_constraints",
    "declared_type",
    "decode_extensions",
    "flatten_dictionaries",
    "parse_declared",
]

_SIMPLE: dict[str, str] = {
    "string": "text",
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "char": "char",
    "character": "char",
    "bpchar": "char",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "smallint": "smallint",
    "int2": "smallint",
    "double": "double",
    "double precision": "double",
    "float": "double",
    "float8": "double",
    "real": "real",
    "float4": "real",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "datetime": "timestamp",
    "timestamp with time zone": "timestamptz",
    "timestamptz": "timestamptz",
    "json": "json",
    "jsonb": "jsonb",
    "numeric": "numeric",
    "decimal": "numeric",
}
_LENGTH = re.compile(r"^(varchar|character varying|char|character|bpchar)\s*\(\s*(\d{1,5})\s*\)$")
_DECIMAL = re.compile(r"^(numeric|decimal)\s*\(\s*(\d{1,3})\s*(?:,\s*(\d{1,3})\s*)?\)$")
_TIMESTAMP = re.compile(r"^timestamp\s*\(\s*(\d)\s*\)\s*(with time zone|without time zone)?$")


@dataclass(frozen=True)
class DeclaredType:
    """A parsed declared SQL type.

    ``kind`` is one of text, varchar, char, smallint, integer, bigint, real,
    double, numeric, boolean, date, timestamp, timestamptz, json, jsonb.
    """

    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class KeyConstraint:
    """A primary key or unique constraint: its kind, its columns in order and its name (if known)."""

    kind: str  # "PRIMARY KEY" or "UNIQUE"
    columns: tuple[str, ...]
    name: str | None = None

    def describe(self) -> str:
        """``PRIMARY KEY (id)``, ``UNIQUE (region, code)``."""
        return f"{self.kind} ({', '.join(self.columns)})"


@dataclass
class TableConstraints:
    """The constraints of a table: declared for one to be created, or read from an existing one.

    ``not_null`` lists the columns that refuse NULL (primary key columns
    included where the vendor enforces it); ``keys`` the primary key and
    unique constraints; ``defaults`` literal defaults by column.
    """

    not_null: list[str] = dataclasses.field(default_factory=list)
    keys: list[KeyConstraint] = dataclasses.field(default_factory=list)
    defaults: dict[str, DefaultValue] = dataclasses.field(default_factory=dict)

    @property
    def primary_key(self) -> KeyConstraint | None:
        """The primary key, if any."""
        return next((k for k in self.keys if k.kind == "PRIMARY KEY"), None)


def parse_declared(text: str) -> DeclaredType | None:
    """The declared type ``text`` (PostgreSQL or DuckDB spelling), or None when it is not one we render.

    Constraints after the type are left out (see :func:`declared_constraints`).
    """
    try:
        text = split_declared(text)[0]
    except ValueError:
        return None
    normalised = " ".join(text.strip().lower().split())
    if normalised in _SIMPLE:
        kind = _SIMPLE[normalised]
        return DeclaredType("char", length=1) if kind == "char" else DeclaredType(kind)
    match = _LENGTH.match(normalised)
    if match:
        length = int(match.group(2))
        if length < 1:
            return None
        kind = "varchar" if match.group(1) in ("varchar", "character varying") else "char"
        return DeclaredType(kind, length=length)
    match = _DECIMAL.match(normalised)
    if match:
        precision, scale = int(match.group(2)), int(match.group(3) or 0)
        if not 1 <= precision <= 1000 or scale > precision:
            return None
        return DeclaredType("numeric", precision=precision, scale=scale)
    match = _TIMESTAMP.match(normalised)
    if match:
        kind = "timestamptz" if match.group(2) == "with time zone" else "timestamp"
        return DeclaredType(kind, precision=int(match.group(1)))
    return None


def declared_type(field: pa.Field[Any]) -> DeclaredType | None:
    """The type declared for ``field`` in its ``flowport.sql_type`` metadata, if any and valid."""
    metadata = field.metadata or {}
    raw = metadata.get(SQL_TYPE_METADATA_KEY)
    if raw is None:
        return None
    try:
        return parse_declared(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def declared_constraints(field: pa.Field[Any]) -> ColumnConstraints:
    """The constraints after the type in ``field``'s ``flowport.sql_type`` metadata (none when invalid)."""
    metadata = field.metadata or {}
    raw = metadata.get(SQL_TYPE_METADATA_KEY)
    if raw is None:
        return ColumnConstraints()
    try:
        return split_declared(raw.decode("utf-8"))[1]
    except (UnicodeDecodeError, ValueError):
        return ColumnConstraints()


def _storage(array: Any) -> Any:
    """An extension array as plain Arrow: UUIDs as their canonical text, others as their storage."""
    extension_name = getattr(array.type, "extension_name", "")
    storage = array.storage
    if extension_name == "arrow.uuid" and pa.types.is_fixed_size_binary(storage.type):
        # Rare enough that a Python loop is fine; the text form is what users compare and join on.
        values = [None if v is None else str(uuid.UUID(bytes=v)) for v in storage.to_pylist()]
        return pa.array(values, pa.string())
    return storage


def decode_extensions(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with extension-typed columns (ADBC's uuid, json, opaque) as plain Arrow columns."""
    if not any(isinstance(f.type, pa.BaseExtensionType) for f in batch.schema):
        return batch
    arrays = []
    fields = []
    for f, column in zip(batch.schema, batch.columns, strict=True):
        if isinstance(f.type, pa.BaseExtensionType):
            column = _storage(column)
            f = pa.field(f.name, column.type, f.nullable, f.metadata)
        arrays.append(column)
        fields.append(f)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, cast(Any, batch.schema.metadata)))


def flatten_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded and view/large columns as plain ones (what drivers accept)."""
    for index, f in enumerate(table.schema):
        target: pa.DataType | None = None
        if pa.types.is_dictionary(f.type):
            target = f.type.value_type
        if target is None and (pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type)):
            target = pa.string()
        if target is None and (pa.types.is_large_binary(f.type) or pa.types.is_binary_view(f.type)):
            target = pa.binary()
        if target is not None:
            if pa.types.is_large_string(target) or pa.types.is_string_view(target):
                target = pa.string()
            column = pc.cast(table.column(index), target)
            table = table.set_column(index, pa.field(f.name, target, f.nullable, f.metadata), column)
    return table
