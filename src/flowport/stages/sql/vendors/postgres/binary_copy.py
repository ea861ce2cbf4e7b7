"""PostgreSQL's binary ``COPY`` format, encoded from Arrow with vectorised kernels (no per-row Python).

A binary COPY stream is a header, then one tuple per row (a 16-bit field
count, then per field a 32-bit length, ``-1`` for NULL, and the value in
the type's binary "send" form, big-endian), then a 16-bit ``-1`` trailer.

Every field is encoded with numpy and Arrow compute kernels, a column at a
time. Runs of fixed-width fields (the field count, columns without NULLs, a
text's length prefix) are written side by side into one structured numpy
array, one block of the same width per row; a text's bytes and a column
with NULLs (whose NULL field is shorter) are pieces of their own. Arrow's
element-wise join then lays each row's pieces end to end, so the values
buffer of the joined array *is* the tuples, ready to send; a tuple of
fixed-width fields only is its block already. :func:`tuple_order` puts the
fixed-width columns first, which makes the fewest pieces.

Supported (:func:`encodable`): ``smallint``, ``integer``, ``bigint``,
``real``, ``double precision``, ``boolean``, ``text`` and the character
types, ``json``, ``bytea``, ``date``, ``timestamp`` with and without time
zone, and ``numeric`` from Arrow integers and from decimals of up to 18
digits (every scale). Decimals of 19 to 38 digits are not encoded here (the
caller falls back to the driver's encoder).

NUMERIC's binary form: ``ndigits``, ``weight``, ``sign``, ``dscale`` (each
16 bits), then ``ndigits`` base-10000 digits, the first of weight
``weight``. PostgreSQL's ``numeric_recv`` strips leading and trailing zero
digits, so every value of a column is sent with the same digit count (fixed
width): the groups of the integer part the precision allows, then those of
the scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["HEADER", "TRAILER", "encodable", "encode_batch", "tuple_order"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.binary())
_pc: Any = pc  # pyarrow's compute stubs type few of these kernels
# PostgreSQL's epoch (2000-01-01) in Unix days and microseconds.
_PG_EPOCH_DAYS = 10957
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400_000_000
_MAX_DECIMAL_DIGITS = 18
_NUMERIC_NEG = 0x4000
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
# The largest offset of a binary array (32-bit offsets); beyond, fields are large binary.
_MAX_OFFSET = (1 << 31) - 1


def encodable(t: pa.DataType) -> bool:
    """Whether Arrow values of type ``t`` (cast for the target column already) are encoded here."""
    if pa.types.is_decimal(t):
        return pa.types.is_decimal128(t) and t.precision <= _MAX_DECIMAL_DIGITS
    return (
        (
            pa.types.is_integer(t)
            and t.bit_width <= 64
            and not (pa.types.is_unsigned_integer(t) and t.bit_width == 64)
        )
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_date32(t)
        or pa.types.is_timestamp(t)
    )


def _buffer(values: Any) -> pa.Buffer:
    """A numpy array's memory as an Arrow buffer (no copy)."""
    return pa.py_buffer(values)


def _view(buffer: Any, dtype: Any, count: int) -> Any:
    """An Arrow buffer's memory as numpy values (no copy)."""
    return np.frombuffer(buffer, dtype=dtype, count=count)


def _binary_of_fixed(raw: np.ndarray[Any, Any], n: int, width: int) -> pa.Array[Any]:
    """``n`` values of ``width`` bytes each, laid end to end in ``raw``, as a binary array.

    The values buffer is ``raw`` itself (only the offsets are made): a cast
    from a fixed-size binary array would copy every byte once more.
    """
    large = (n + 1) * width > _MAX_OFFSET
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64 if large else np.int32)
    binary = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(binary, n, [None, _buffer(offsets), _buffer(raw)])


def _fixed(values: np.ndarray[Any, Any], valid: pa.Array[Any] | None) -> pa.Array[Any]:
    """Each value as ``length + big-endian bytes`` (NULL: length -1), a binary array."""
    n = len(values)
    width = values.dtype.itemsize
    record = np.empty(n, dtype=np.dtype([("len", ">i4"), ("v", values.dtype.newbyteorder(">"))]))
    record["len"] = width
    record["v"] = values
    return _nulls(_binary_of_fixed(record, n, 4 + width), valid)


def _rows(matrix: np.ndarray[Any, Any], valid: pa.Array[Any] | None) -> pa.Array[Any]:
    """Rows of a C-contiguous byte matrix as binary values (NULL where ``valid`` is false)."""
    n, width = matrix.shape[0], matrix.shape[1] * matrix.dtype.itemsize
    return _nulls(_binary_of_fixed(np.ascontiguousarray(matrix), n, width), valid)


def _nulls(field: pa.Array[Any], valid: pa.Array[Any] | None) -> pa.Array[Any]:
    if valid is None:
        return field
    null = _NULL if field.type == _NULL.type else _NULL.cast(field.type)
    result: pa.Array[Any] = _pc.if_else(valid, field, null)
    return result


def _validity(column: pa.Array[Any]) -> pa.Array[Any] | None:
    return pc.is_valid(column) if column.null_count else None


def _numbers(column: pa.Array[Any], dtype: Any) -> np.ndarray[Any, Any]:
    """The values of a primitive column as numpy (NULLs as zero)."""
    if column.null_count:
        column = _pc.fill_null(column, 0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _variable(column: pa.Array[Any]) -> tuple[np.ndarray[Any, Any], pa.Array[Any]]:
    """Text or bytes: the length prefixes (-1 for NULL, big-endian) and the bytes (NULL: none)."""
    data: Any = column.cast(pa.large_binary()) if pa.types.is_large_string(column.type) else column
    if pa.types.is_string(data.type):
        data = data.cast(pa.binary())
    lengths = _pc.binary_length(data)
    if data.null_count:
        lengths = _pc.fill_null(lengths, -1)
    # A NULL value takes no bytes: its prefix alone is the field.
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=">i4"), data


def _numeric_from_ints(unscaled: np.ndarray[Any, Any], precision: int, scale: int) -> np.ndarray[Any, Any]:
    """NUMERIC fields (length, header, digits) for integers ``unscaled / 10**scale``, as an int16 matrix."""
    n = len(unscaled)
    negative = unscaled < 0
    magnitude = np.abs(unscaled).astype(np.uint64)
    int_digits = max(precision - scale, 0)
    int_groups = -(-int_digits // 4)
    frac_groups = -(-scale // 4)
    groups = int_groups + frac_groups
    matrix = np.empty((n, 6 + groups), dtype=">i2")
    matrix[:, 0] = 0  # high half of the 32-bit length
    matrix[:, 1] = 8 + 2 * groups
    matrix[:, 2] = groups
    matrix[:, 3] = int_groups - 1  # weight of the first digit
    matrix[:, 4] = np.where(negative, _NUMERIC_NEG, 0)
    matrix[:, 5] = scale
    ten = np.uint64(10)
    whole = magnitude // ten ** np.uint64(scale) if scale else magnitude
    fraction = magnitude % ten ** np.uint64(scale) if scale else None
    for g in range(int_groups):  # most significant first
        power = np.uint64(10000) ** np.uint64(int_groups - 1 - g)
        matrix[:, 6 + g] = (whole // power) % np.uint64(10000)
    for g in range(frac_groups):
        assert fraction is not None
        start = 4 * g  # the group's first fractional digit
        if scale - start >= 4:
            digits = (fraction // ten ** np.uint64(scale - start - 4)) % np.uint64(10000)
        else:
            digits = (fraction % ten ** np.uint64(scale - start)) * ten ** np.uint64(4 - (scale - start))
        matrix[:, 6 + int_groups + g] = digits
    return matrix


def _decimal_unscaled(column: pa.Array[Any]) -> np.ndarray[Any, Any]:
    """The unscaled values of a decimal128 column of at most 18 digits (they fit the low 64 bits).

    Slots under NULLs hold whatever they hold: their fields are replaced by the NULL marker.
    """
    buffer = column.buffers()[1]
    assert buffer is not None
    words = _view(buffer, "<i8", 2 * (column.offset + len(column)))
    unscaled: np.ndarray[Any, Any] = words[2 * column.offset :: 2].astype(np.int64)
    return unscaled


def _fixed_field(column: pa.Array[Any]) -> pa.Array[Any]:
    """A fixed-width column's fields as a binary array (a NULL's field is the 4-byte marker alone)."""
    valid = _validity(column)
    if pa.types.is_decimal(column.type):
        return _rows(_fixed_values(column).view(np.uint8).reshape(len(column), -1), valid)
    return _fixed(_fixed_values(column), valid)


def _fixed_values(column: pa.Array[Any]) -> np.ndarray[Any, Any]:
    """A fixed-width column's values in their binary form (NULLs as anything): one numpy value per
    row, or for NUMERIC an int16 matrix whose rows are whole fields (their length included)."""
    t = column.type
    if pa.types.is_decimal(t):
        return _numeric_from_ints(_decimal_unscaled(column), t.precision, t.scale)
    if pa.types.is_boolean(t):
        return _numbers(column.cast(pa.uint8()), np.uint8)
    if pa.types.is_integer(t):
        dtype = {8: np.int16, 16: np.int16, 32: np.int32, 64: np.int64}[t.bit_width]
        if pa.types.is_unsigned_integer(t):
            dtype = {8: np.int16, 16: np.int32, 32: np.int64}[t.bit_width]
        return _numbers(column, dtype)
    if pa.types.is_floating(t):
        return _numbers(column, np.float32 if t.bit_width == 32 else np.float64)
    if pa.types.is_date32(t):
        return _numbers(column.cast(pa.int32()), np.int32) - np.int32(_PG_EPOCH_DAYS)
    if pa.types.is_timestamp(t):
        ticks = _numbers(column.cast(pa.int64()), np.int64)
        per_us = _UNIT_US[t.unit]
        micros = ticks // 1000 if per_us is None else ticks * per_us  # nanoseconds cut to microseconds
        return micros - np.int64(_PG_EPOCH_US)
    raise TypeError(f"no binary COPY encoding for Arrow type {t}")


def _is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def tuple_order(schema: pa.Schema) -> list[str]:
    """The column names in the order that encodes quickest: fixed-width types first, text last.

    Every fixed-width field of a tuple up to the first text's bytes (with that
    text's length prefix) is then written as one block; the COPY's column
    list names the columns in this order.
    """
    return [f.name for f in schema if not _is_text(f.type)] + [f.name for f in schema if _is_text(f.type)]


class _Block:
    """Fields of fixed width laid end to end, the same width on every row, written into one
    structured numpy array (one strided write per field) and joined to the rest as one field."""

    def __init__(self) -> None:
        self.formats: list[Any] = []
        self.values: list[Any] = []

    def add(self, dtype: Any, values: Any) -> None:
        self.formats.append(dtype)
        self.values.append(values)

    def build(self, n: int) -> pa.Array[Any]:
        names = [f"f{i}" for i in range(len(self.formats))]
        record = np.empty(n, dtype=np.dtype({"names": names, "formats": self.formats}))
        for name, values in zip(names, self.values, strict=True):
            record[name] = values
        return _binary_of_fixed(record.view(np.uint8), n, record.dtype.itemsize)


# A batch whose encoded fields could pass 2 GiB (32-bit Arrow offsets) is encoded in slices.
_MAX_SLICE_BYTES = 1 << 29


def encode_batch(batch: pa.RecordBatch | pa.Table) -> pa.Buffer:
    """The tuples of ``batch`` in binary COPY form (no header or trailer), one buffer.

    The fields of a tuple are laid out in pieces: runs of fields of fixed
    width (the field count, a column without NULLs, a text's length prefix)
    become one block of the same width on every row (:class:`_Block`); a
    text's bytes and a fixed-width column with NULLs (whose NULL field is
    shorter) are pieces of their own. Arrow's ``binary_join_element_wise``
    with an empty separator then lays each row's pieces end to end, so the
    joined values buffer is the tuples, in one pass; with one piece (no text,
    no NULL) the block is the tuples already. Columns in :func:`tuple_order`
    make the fewest pieces.
    """
    n = batch.num_rows
    if n and batch.nbytes > _MAX_SLICE_BYTES:
        half = n // 2
        return pa.py_buffer(
            encode_batch(batch.slice(0, half)).to_pybytes() + encode_batch(batch.slice(half)).to_pybytes()
        )
    columns = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in batch.columns]
    pieces: list[pa.Array[Any]] = []
    block = _Block()
    block.add(">i2", len(columns))  # the field count
    for column in columns:
        if _is_text(column.type):
            prefix, text = _variable(column)
            block.add(">i4", prefix)
            pieces.append(block.build(n))
            pieces.append(text)
            block = _Block()
        elif column.null_count:
            if block.formats:
                pieces.append(block.build(n))
                block = _Block()
            pieces.append(_fixed_field(column))
        else:
            values = _fixed_values(column)
            if values.ndim == 2:  # NUMERIC: whole fields
                block.add((values.dtype, values.shape[1]), values)
            else:
                big = values.dtype.newbyteorder(">")
                block.add(">i4", big.itemsize)
                block.add(big, values)
    if block.formats:
        pieces.append(block.build(n))
    if len(pieces) == 1:
        rows = pieces[0]
    else:
        large = any(pa.types.is_large_binary(f.type) for f in pieces)
        if large:
            pieces = [_pc.cast(f, pa.large_binary()) for f in pieces]
        separator = pa.scalar(b"", pa.large_binary() if large else pa.binary())
        # A NULL text's bytes field is null: nothing (its prefix alone, -1, is the field).
        rows = _pc.binary_join_element_wise(*pieces, separator, null_handling="replace", null_replacement="")
    large = pa.types.is_large_binary(rows.type)
    offsets = _view(rows.buffers()[1], np.int64 if large else np.int32, rows.offset + len(rows) + 1)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + len(rows)])
    data = rows.buffers()[2]
    if data is None or end == start:
        return pa.py_buffer(b"")
    return data.slice(start, end - start)
