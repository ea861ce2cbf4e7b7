"""SQL Table origin: a whole table, or only its new rows (incremental reads on an offset column)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pydantic import field_validator, model_validator

from flowport.plugins.contract import Origin, StageOutput, setting
from flowport.stages._files import limited
from flowport.stages.sql._common import SqlConnectionConfig, driver_errors, open_sql
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._identifiers import TableName, check_identifier, parse_table_name

__all__ = [
    "SqlTableOrigin",
    "SqlTableOriginConfig",
    "decode_offset",
    "encode_offset",
    "key_ranges",
]

_OFFSET_PARAMETER = "fp_offset"


class SqlTableOriginConfig(SqlConnectionConfig):
    """Settings of the SQL Table origin."""

    table: str = setting(
        label="Table",
        description="Table to read: 'table' or 'schema.table', each part taken exactly as written.",
        min_length=1,
    )
    columns: list[str] | None = setting(
        None, label="Columns", description="Columns to read, in this order (default: all)."
    )
    offset_column: str | None = setting(
        None,
        label="Offset column",
        description="Read incrementally: only rows whose value in this column is greater than the "
        "largest one a successful run read before, in its order. Rows where it is NULL are never read.",
    )
    initial_offset: str | int | float | None = setting(
        None,
        label="Initial offset",
        description="With an offset column: where the first run starts (exclusive). Default: the beginning.",
    )

    partition_column: str | None = setting(
        None,
        label="Partition column",
        description="An integer column whose value ranges split the reading when the flow's configuration "
        "asks for partitions: each partition reads one range, in parallel.",
    )
    partition_range: list[int] | None = setting(
        None,
        label="Partition range",
        description="Set by a partitioned run for one partition: [low, high] reads the rows whose "
        "partition column is at least low and below high.",
        min_length=2,
        max_length=2,
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parse_table_name(value)
        return value

    @field_validator("partition_column")
    @classmethod
    def _partition_column(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, what="partition column")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("columns must name at least one column (leave it out to read all)")
        for name in value:
            check_identifier(name, what="column name")
        if len(set(value)) != len(value):
            raise ValueError("columns must not repeat a name")
        return value

    @field_validator("offset_column")
    @classmethod
    def _offset_column(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, what="offset column")

    @model_validator(mode="after")
    def _initial_needs_column(self) -> SqlTableOriginConfig:
        if self.initial_offset is not None and self.offset_column is None:
            raise ValueError("initial_offset needs an offset_column")
        if self.partition_range is not None and self.partition_column is None:
            raise ValueError("partition_range needs a partition_column")
        if self.partition_column is not None and self.offset_column is not None:
            raise ValueError("a table is read by partitions or incrementally (offset_column), not both")
        return self


def encode_offset(value: Any) -> dict[str, Any]:
    """An offset value as JSON, tagged with its type so it binds as the same type later."""
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, dt.datetime):
        return {"type": "timestamp", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, (bytes, bytearray)):
        return {"type": "bytes", "value": base64.b64encode(bytes(value)).decode()}
    return {"type": "string", "value": str(value)}


def decode_offset(data: dict[str, Any]) -> Any:
    """The Python value of an :func:`encode_offset` result."""
    kind, value = data.get("type"), data.get("value")
    if value is None:
        return None
    if kind == "decimal":
        return decimal.Decimal(value)
    if kind == "timestamp":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


def _declared_text(value: Any) -> Any:
    """A value as a database that keeps dates and times as text (SQLite) compares them: in the form
    Flowport writes them."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _column_index(schema: pa.Schema, name: str) -> int:
    """The position of ``name`` in ``schema`` (databases may spell it in another case)."""
    index = schema.get_field_index(name)
    if index >= 0:
        return index
    lowered = [n.lower() for n in schema.names]
    if lowered.count(name.lower()) == 1:
        return lowered.index(name.lower())
    raise ValueError(f"the offset column '{name}' is not in the result (columns: {', '.join(schema.names)})")


class SqlTableOrigin(Origin[SqlTableOriginConfig]):
    """Reads a table, whole or incrementally.

    With ``offset_column`` the rows come ordered by that column and only
    those past the last offset are read. The last offset is the stage's
    state (:meth:`~flowport.plugins.contract.StageContext.save_state`: in the
    metadata store, keyed by the flow's uuid and the stage's name). It is
    written in :meth:`close`, and only when every row was read and the run
    was neither cancelled nor failed (a failure anywhere in the run cancels
    it) nor a preview: a failed run is read again next time, so rows may be
    read twice but are never skipped.
    """

    name = "sql_table_origin"
    label = "SQL Table"
    description = "Reads a database table, whole or only the rows added since the last run (offset column)."
    config_model = SqlTableOriginConfig
    restrictions = frozenset({"network"})

    def open(self) -> None:
        """Connect and load the last offset."""
        self._conn: SqlConnection | None = None
        self._table = parse_table_name(self.config.table)
        self._exhausted = False
        self._last: Any = None
        self._seen = False
        self._offset = self._start_offset()
        self._conn = open_sql(self.context, self.config.connection)

    def close(self) -> None:
        """Store the new offset (only after a complete, successful read) and close the connection."""
        conn = getattr(self, "_conn", None)
        try:
            if (
                getattr(self, "_seen", False)
                and self._exhausted
                and not self.context.cancelled
                and not self.context.preview
            ):
                self._save_offset(self._last)
        finally:
            if conn is not None:
                self._conn = None
                # A failed read may have left the transaction aborted: closing anyway.
                with contextlib.suppress(Exception):
                    conn.rollback()
                conn.close()

    # -- state ------------------------------------------------------------
    def _start_offset(self) -> Any:
        if self.config.offset_column is None:
            return None
        state = self.context.load_state()
        if (
            isinstance(state, dict)
            and state.get("table") == self.config.table
            and state.get("offset_column") == self.config.offset_column
            and isinstance(state.get("offset"), dict)
        ):
            return decode_offset(state["offset"])
        if state is not None:
            self.context.logger.warning(
                "the saved offset of stage %s is for another table or column; starting from the initial one",
                self.context.stage_name,
            )
        return self.config.initial_offset

    def _save_offset(self, value: Any) -> None:
        self.context.save_state(
            {
                "table": self.config.table,
                "offset_column": self.config.offset_column,
                "offset": encode_offset(value),
                "run_id": self.context.run_id,
                "updated_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )

    # -- reading ----------------------------------------------------------
    def _query(self, conn: SqlConnection) -> tuple[str, dict[str, Any]]:
        q = conn.quote
        offset_column = self.config.offset_column
        names = list(self.config.columns or [])
        if names and offset_column is not None and offset_column not in names:
            names.append(offset_column)  # needed to track the offset; dropped from the output
        select = ", ".join(q(n) for n in names) if names else "*"
        sql = f"SELECT {select} FROM {conn.table_sql(self._table)}"
        parameters: dict[str, Any] = {}
        if self.config.partition_range is not None and self.config.partition_column is not None:
            low, high = self.config.partition_range
            column = q(self.config.partition_column)
            sql += f" WHERE {column} >= {int(low)} AND {column} < {int(high)}"
        if offset_column is not None:
            sql += f" WHERE {q(offset_column)} IS NOT NULL"
            if self._offset is not None:
                sql += f" AND {q(offset_column)} > :{_OFFSET_PARAMETER}"
                value = self._offset
                parameters[_OFFSET_PARAMETER] = (
                    _declared_text(value) if conn.capabilities.declared_types else value
                )
            sql += f" ORDER BY {q(offset_column)}"
        return sql, parameters

    def _declared(self, conn: SqlConnection) -> dict[str, str] | None:
        if not conn.capabilities.declared_types:
            return None
        table = self._table if self._table.schema else TableName(self._table.name, "main")
        return dict(conn.columns(table))

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Stream the table (or its new rows)."""
        if not hasattr(self, "_table"):
            self.open()
        conn = self._conn
        assert conn is not None
        offset_column = self.config.offset_column
        extra = (
            offset_column is not None
            and bool(self.config.columns)
            and offset_column not in (self.config.columns or [])
        )
        with driver_errors(self.context.stage_name, conn.spec, f"cannot read table '{self.config.table}'"):
            sql, parameters = self._query(conn)
            stream = conn.stream(
                sql, parameters, max(1, self.context.batch_size), declared=self._declared(conn)
            )
            try:
                for batch in limited(self.context, stream):
                    if offset_column is not None and batch.num_rows:
                        index = _column_index(batch.schema, offset_column)
                        self._last = batch.column(index)[-1].as_py()
                        self._seen = True
                        if extra:
                            batch = batch.drop_columns([batch.schema.names[index]])
                    yield batch
                else:
                    # A preview stops at its record limit: that is not the end of the table.
                    self._exhausted = not self.context.cancelled and self.context.record_limit is None
            finally:
                stream.close()


def key_ranges(conn: SqlConnection, table: str, column: str, count: int) -> list[tuple[int, int]]:
    """Split an integer column's values into at most ``count`` ranges ``[low, high)`` of equal width.

    Rows whose value is NULL belong to no range: a partitioned run refuses such a table (ValueError),
    since they would not be read. An empty table gives no range.
    """
    name = conn.table_sql(parse_table_name(table))
    q = conn.quote(check_identifier(column, what="partition column"))
    found = conn.query(f"SELECT min({q}), max({q}), count(*) - count({q}) FROM {name}")
    conn.rollback()
    low, high, nulls = found[0]
    if nulls:
        raise ValueError(
            f"{int(nulls)} row(s) of {table} have no {column}: a partitioned read would skip them"
        )
    if low is None:
        return []
    low, high = int(low), int(high) + 1
    width = max(1, -(-(high - low) // max(count, 1)))
    return [(start, min(start + width, high)) for start in range(low, high, width)]
