"""DB-API rows (Python values) turned into Arrow batches with one schema per result.

Drivers without an Arrow interface (PyMySQL, sqlite3, psycopg for Redshift)
return tuples. Every batch of one result must have the same schema, or the
destinations downstream would see a column change type half-way, so each
column's Arrow type is fixed up front from the driver's column description
when it tells, otherwise from the first batch where the column has a value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["ColumnsMixedTypes", "RowBatcher", "sqlite_declared_arrow"]


class ColumnsMixedTypes(ValueError):
    """A column holds values that do not fit the type its first values (or its declaration) gave it."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _decimal(value: Any, scale: int) -> decimal.Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        number = decimal.Decimal(repr(value))
    elif isinstance(value, decimal.Decimal):
        number = value
    else:
        number = decimal.Decimal(str(value))
    # A value stored with more digits than declared (SQLite stores whatever it gets) is rounded
    # like PostgreSQL rounds on insert, rather than failing the read.
    return number.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_EVEN)


def _inferred(values: list[Any]) -> pa.Array[Any]:
    """An array of ``values`` with a type that later batches can share."""
    sample = next(v for v in values if v is not None)
    if isinstance(sample, bool):
        return pa.array(values, pa.bool_())
    if isinstance(sample, (int, float)) and not isinstance(sample, bool):
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int}:
            return pa.array(values, pa.int64())
        if kinds <= {int, float}:
            return pa.array(values, pa.float64())
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return pa.array([None if v is None else bytes(v) for v in values], pa.binary())
    if isinstance(sample, dt.datetime):
        zone = "UTC" if sample.tzinfo is not None else None
        return pa.array(values, pa.timestamp("us", zone))
    if isinstance(sample, dt.date):
        return pa.array(values, pa.date32())
    # Everything else (text, Decimal of varying precision, UUID, JSON, mixed) as text.
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _temporal_from_text(values: list[Any], target: pa.DataType) -> pa.Array[Any]:
    # SQLite stores dates and timestamps as text; MariaDB returns invalid "zero" dates as text.
    texts = [None if v is None or (isinstance(v, str) and v.startswith("0000-00-00")) else v for v in values]
    if not any(isinstance(v, str) for v in texts):
        return pa.array(texts, target)
    as_text = pa.array([None if v is None else _text(v) for v in texts], pa.string())
    try:
        return as_text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if pa.types.is_timestamp(target) and target.tz is None:
            # Text with a zone ("...Z", "+02:00"): read as UTC and drop the zone.
            return as_text.cast(pa.timestamp(target.unit, "UTC")).cast(target)
        raise


def _convert(values: list[Any], target: pa.DataType) -> pa.Array[Any]:
    if pa.types.is_string(target):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())
    if pa.types.is_decimal(target):
        return pa.array([_decimal(v, target.scale) for v in values], target)
    if pa.types.is_binary(target):
        return pa.array(
            [None if v is None else bytes(v) if not isinstance(v, str) else v.encode() for v in values],
            target,
        )
    if pa.types.is_boolean(target):
        return pa.array([None if v is None else bool(v) for v in values], target)
    if pa.types.is_timestamp(target) or pa.types.is_date(target):
        return _temporal_from_text(values, target)
    if pa.types.is_floating(target):
        return pa.array([None if v is None else float(v) for v in values], target)
    return pa.array(values, target)


_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    ValueError,
    TypeError,
    decimal.InvalidOperation,
    OverflowError,
)


class RowBatcher:
    """Builds Arrow batches from DB-API rows, keeping one schema for the whole result.

    ``types`` gives each column's Arrow type, or None to take it from the first
    values seen. ``metadata`` is optional field metadata per column (e.g. the
    declared SQL type of a PostgreSQL ``numeric`` read as text).
    """

    def __init__(
        self,
        names: Sequence[str],
        types: Sequence[pa.DataType | None],
        metadata: Sequence[dict[bytes, bytes] | None] | None = None,
    ) -> None:
        self.names = list(names)
        self.types: list[pa.DataType | None] = list(types)
        self.metadata = list(metadata) if metadata is not None else [None] * len(self.names)

    def schema(self) -> pa.Schema:
        """The schema as known so far (columns never seen with a value are strings)."""
        return pa.schema(
            [
                pa.field(n, t if t is not None else pa.string(), metadata=m)
                for n, t, m in zip(self.names, self.types, self.metadata, strict=True)
            ]
        )

    def batch(self, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
        """The rows as one record batch."""
        arrays: list[pa.Array[Any]] = []
        for index, name in enumerate(self.names):
            values = [row[index] for row in rows]
            target = self.types[index]
            if target is None:
                if all(v is None for v in values):
                    arrays.append(pa.nulls(len(values), pa.string()))
                    continue
                array = _inferred(values)
                self.types[index] = array.type
                arrays.append(array)
                continue
            try:
                arrays.append(_convert(values, target))
            except _CONVERSION_ERRORS as exc:
                bad = next((v for v in values if v is not None), None)
                raise ColumnsMixedTypes(
                    f"column '{name}' is read as {target} but holds {type(bad).__name__} values "
                    f"such as {str(bad)[:80]!r} ({exc}); CAST it in the query"
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema())


def sqlite_declared_arrow(declared: str) -> pa.DataType | None:
    """The Arrow type for a SQLite column declared ``declared`` (None: take it from the values).

    SQLite keeps whatever type a value had, so declarations are only a hint:
    the usual type names are honoured and everything else is inferred.
    """
    text = " ".join(declared.strip().upper().split())
    if not text:
        return None
    if text in ("BOOLEAN", "BOOL"):
        return pa.bool_()
    if text.startswith(("NUMERIC(", "DECIMAL(")):
        inner = text[text.index("(") + 1 : text.rindex(")")] if ")" in text else ""
        parts = [p.strip() for p in inner.split(",")]
        if parts and all(p.isdigit() for p in parts) and 1 <= int(parts[0]) <= 38:
            scale = int(parts[1]) if len(parts) > 1 else 0
            if scale <= int(parts[0]):
                return pa.decimal128(int(parts[0]), scale)
    if text == "DATE":
        return pa.date32()
    if text.startswith(("TIMESTAMP", "DATETIME")):
        zoned = "WITH TIME ZONE" in text or text.startswith("TIMESTAMPTZ")
        return pa.timestamp("us", "UTC" if zoned else None)
    # SQLite's own affinity rules, in its order.
    if "INT" in text:
        return pa.int64()
    if any(word in text for word in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in text:
        return pa.binary()
    if any(word in text for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return None
