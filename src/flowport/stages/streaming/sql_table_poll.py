"""SQL Table streaming origin: a table polled for rows past an increasing offset column.

The SQL Table origin (``stages/sql/table_origin.py``) already reads a
table incrementally for batch flows; this one is it as a streaming origin:
one micro-batch per run (at most about ``batch_size`` rows past the offset,
waiting up to ``batch_wait`` for any), the new offset saved in the stage's
state in :meth:`acknowledge`, that is only after every destination committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import StageOutput, setting
from flowport.stages._files import limited
from flowport.stages.sql._common import driver_errors
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql.table_origin import SqlTableOrigin, SqlTableOriginConfig, _column_index

__all__ = ["SqlTablePollOrigin", "SqlTablePollOriginConfig"]


class SqlTablePollOriginConfig(SqlTableOriginConfig):
    """Settings of the SQL Table streaming origin."""

    offset_column: str = setting(
        label="Offset column",
        description="A column whose value only grows as rows are added (an identity or serial id, an "
        "insertion time): each micro-batch reads the rows past the last committed value, in its order. "
        "Rows where it is NULL are never read.",
        min_length=1,
    )
    batch_wait: float = setting(
        1.0,
        label="Batch Wait (seconds)",
        description="When no new row is there, how long a micro-batch waits before looking again "
        "(the polling interval).",
        gt=0,
        le=3600,
    )


class SqlTablePollOrigin(SqlTableOrigin):
    """Polls a table (PostgreSQL, and any SQL connection) for rows past its offset column's last value.

    A micro-batch holds the next ``batch_size`` rows in the offset column's
    order and every further row sharing the last one's value, so rows with an
    equal offset are never split between two micro-batches (and none is
    skipped). The offset is saved only in :meth:`acknowledge`: a failed or
    killed micro-batch is read again. Rows must become visible in offset
    order: a transaction that commits a smaller id after a larger one was
    read is missed (use a column the database assigns at commit time, or
    poll a table written by one writer at a time).
    """

    name = "sql_table_stream_origin"
    label = "SQL Table Poller"
    description = (
        "Streaming origin: a database table polled for rows past an increasing offset column; "
        "the offset is saved after the commit."
    )
    config_model = SqlTablePollOriginConfig
    config: SqlTablePollOriginConfig
    streaming = True

    @property
    def _column(self) -> str:
        return self.config.offset_column

    def _query(self, conn: SqlConnection) -> tuple[str, dict[str, Any]]:
        """The batch query, bounded to the offset value of the ``batch_size``-th new row."""
        sql, parameters = super()._query(conn)
        q = conn.quote
        column = q(self._column)
        where, order = sql.rsplit(" ORDER BY ", 1)
        marker = f" WHERE {column} IS NOT NULL"
        condition = where[where.rindex(marker) + len(" WHERE ") :]
        window = (
            f"SELECT {column} FROM {conn.table_sql(self._table)} WHERE {condition} "
            f"ORDER BY {column} LIMIT {max(1, self.context.batch_size)}"
        )
        bounded = f"{where} AND {column} <= (SELECT max({column}) FROM ({window}) fp_window) ORDER BY {order}"
        return bounded, parameters

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """One micro-batch: the next rows past the offset; if none, one more look after batch_wait."""
        if not hasattr(self, "_table"):
            self.open()
        found = False
        for batch in self._read():
            found = True
            yield batch
        if found or self.context.preview:
            return
        deadline = time.monotonic() + self.config.batch_wait
        while time.monotonic() < deadline and not self.context.cancelled:
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
        if not self.context.cancelled:
            yield from self._read()

    def _read(self) -> Iterator[pa.RecordBatch]:
        conn = self._conn
        assert conn is not None
        offset_column = self.config.offset_column
        extra = bool(self.config.columns) and offset_column not in (self.config.columns or [])
        with driver_errors(self.context.stage_name, conn.spec, f"cannot read table '{self.config.table}'"):
            sql, parameters = self._query(conn)
            stream = conn.stream(
                sql, parameters, max(1, self.context.batch_size), declared=self._declared(conn)
            )
            try:
                for batch in limited(self.context, stream):
                    if not batch.num_rows:
                        continue
                    index = _column_index(batch.schema, self._column)
                    self._last = batch.column(index)[-1].as_py()
                    self._seen = True
                    if extra:
                        batch = batch.drop_columns([batch.schema.names[index]])
                    yield batch
            finally:
                stream.close()
            # A read ends the transaction it opened: the next look sees rows committed since.
            conn.rollback()

    def acknowledge(self) -> None:
        """Save the offset of the micro-batch's last row (its rows are committed)."""
        if not self._seen:
            return
        self._save_offset(self._last)
        self._offset = self._last
        self._seen = False

    def reset(self, position: str) -> None:
        """Start again from ``earliest`` (the initial offset), ``latest`` (the largest value) or a value."""
        if position == "earliest":
            value: Any = self.config.initial_offset
        elif position == "latest":
            conn = self._conn
            assert conn is not None
            column = conn.quote(self._column)
            with driver_errors(
                self.context.stage_name, conn.spec, f"cannot read table '{self.config.table}'"
            ):
                stream = conn.stream(
                    f"SELECT max({column}) AS fp_max FROM {conn.table_sql(self._table)}", {}, 1
                )
                try:
                    rows = [b.column(0)[0].as_py() for b in stream if b.num_rows]
                finally:
                    stream.close()
                conn.rollback()
            value = rows[0] if rows else None
        else:
            value = _number_or_text(position)
            self._check_offset(value, position)
        if value is None:  # from the beginning (decode_offset reads a None value as no offset)
            self.context.save_state(
                {
                    "table": self.config.table,
                    "offset_column": self.config.offset_column,
                    "offset": {"type": "none", "value": None},
                    "reset_to": position,
                }
            )
        else:
            self._save_offset(value)

    def _check_offset(self, value: Any, position: str) -> None:
        """Refuse a value the offset column cannot be compared with (before it is saved)."""
        conn = self._conn
        assert conn is not None
        column = conn.quote(self._column)
        try:
            stream = conn.stream(
                f"SELECT {column} FROM {conn.table_sql(self._table)} WHERE {column} > :fp_offset LIMIT 1",
                {"fp_offset": value},
                1,
            )
            try:
                for _ in stream:
                    pass
            finally:
                stream.close()
        except Exception as exc:
            raise StageError(
                self.context.stage_name,
                f"{self.label} resets to earliest, latest or a value of column "
                f"'{self.config.offset_column}', not {position!r} "
                f"({conn.spec.scrub(' '.join(str(exc).split()))[:300]})",
            ) from None
        finally:
            conn.rollback()

    def close(self) -> None:
        """Close the connection (the offset was saved, or not, in acknowledge)."""
        self._seen = False  # the batch origin would save its offset here
        super().close()


def _number_or_text(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
