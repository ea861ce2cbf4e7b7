"""Redshift: PostgreSQL's SQL over psycopg, loads by multi-row INSERT.

:class:`RedshiftConnection` and :class:`RedshiftLoad` subclass PostgreSQL's
and override only what differs: the driver, the catalog look-ups, and how
batches reach the staging table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.stages.sql._connection import (
    FORMAT_TOKEN,
    Dependent,
    Dependents,
    Row,
    format_style,
)
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import SEQ
from flowport.stages.sql._params import bind_named
from flowport.stages.sql._rows import RowBatcher
from flowport.stages.sql._types import TableConstraints
from flowport.stages.sql.vendors.postgres import IngestStream, PostgresConnection, PostgresLoad
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY

__all__ = ["RedshiftConnection", "RedshiftLoad"]

_PG_OIDS: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", "UTC"),
    1186: pa.duration("us"),
}
_PG_NUMERIC_OID = 1700


class RedshiftConnection(PostgresConnection):
    """Redshift (PostgreSQL wire protocol) through psycopg: PostgreSQL's SQL, another driver.

    Redshift has no ``COPY FROM STDIN`` (only from S3), so loads are
    multi-row INSERTs of many rows each, and its unique constraints are
    informational, so upserts always use UPDATE + INSERT. What differs from
    PostgreSQL is overridden here: the driver (statements, transactions,
    reads) and the catalog look-ups (no ``to_regclass``, keys not enforced).
    """

    vendor = "redshift"
    capabilities = dataclasses.replace(
        PostgresConnection.capabilities,
        bulk_path="multi-row INSERT",
        upsert="update and insert",
        enforces_unique=False,
        transactional_truncate=False,  # TRUNCATE commits the transaction
        param_style="format",
    )

    @classmethod
    def open(cls, spec: ConnectionSpec) -> RedshiftConnection:
        """Connect with psycopg (not in autocommit) and use UTC."""
        connection = cls(spec, connect_dbapi(spec, autocommit=False))
        try:
            connection.execute("SET TIME ZONE 'UTC'")
            connection.commit()
        except BaseException:
            connection.close()
            raise
        return connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement in the current transaction."""
        with self.raw.cursor() as cursor:
            cursor.execute(*format_style(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        with self.raw.cursor() as cursor:
            cursor.execute(*format_style(sql, params))
            return [tuple(r) for r in cursor.fetchall()]

    def ingest(self, table: TableName, data: pa.Table, *, create: bool, temporary: bool = False) -> None:
        """Refused: Redshift has no ``COPY FROM STDIN`` (see :meth:`insert_rows`)."""
        raise NotImplementedError("Redshift has no COPY FROM STDIN; load with insert_rows")

    def ingest_stream(
        self, table: TableName, schema: pa.Schema, *, create: bool, temporary: bool = False
    ) -> IngestStream:
        """Refused: Redshift has no ``COPY FROM STDIN`` (see :meth:`insert_rows`)."""
        raise NotImplementedError("Redshift has no COPY FROM STDIN; load with insert_rows")

    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """The schema from configuration, else the current schema (Redshift has no to_regclass)."""
        schema = table.schema
        if schema is None:
            current = self.query("SELECT current_schema()")
            schema = str(current[0][0]) if current and current[0][0] else "public"
        p = self.param(1)
        rows = self.query(
            f"SELECT 1 FROM information_schema.tables WHERE table_schema = {p} AND table_name = {p} "
            "AND table_type = 'BASE TABLE'",
            [schema, table.name],
        )
        return TableName(table.name, schema), bool(rows)

    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """Column names and types from information_schema."""
        p = self.param(1)
        rows = self.query(
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
            f"FROM information_schema.columns WHERE table_schema = {p} AND table_name = {p} "
            "ORDER BY ordinal_position",
            [table.schema, table.name],
        )
        result = []
        for name, data_type, length, precision, scale in rows:
            sql_type = str(data_type)
            if sql_type in ("character varying", "character") and length is not None:
                sql_type = f"{sql_type}({int(length)})"
            elif sql_type == "numeric" and precision is not None:
                sql_type = f"numeric({int(precision)},{int(scale or 0)})"
            result.append((str(name), sql_type))
        return result

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """None that can be relied on: Redshift does not enforce unique constraints."""
        return []

    def constraints(self, table: TableName) -> TableConstraints:
        """NOT NULL columns only: Redshift does not enforce keys."""
        p = self.param(1)
        rows = self.query(
            f"SELECT column_name FROM information_schema.columns WHERE table_schema = {p} "
            f"AND table_name = {p} AND is_nullable = 'NO' ORDER BY ordinal_position",
            [table.schema, table.name],
        )
        return TableConstraints(not_null=[str(r[0]) for r in rows])

    def dependents(self, table: TableName) -> Dependents:
        """Views (bound ones block a DROP), grants and another owner. Foreign keys are informational
        on Redshift, and TRUNCATE commits the transaction, so it is never offered."""
        p = self.param(1)
        relation = (
            "(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE n.nspname = {p} AND c.relname = {p})"
        )
        rows = self.query(
            "SELECT DISTINCT 'view', v.relname FROM pg_catalog.pg_depend d "
            "JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_catalog.pg_class v ON v.oid = r.ev_class "
            f"WHERE d.refobjid = {relation} AND r.ev_class <> d.refobjid "
            "UNION SELECT 'grants', '' FROM pg_catalog.pg_class c "
            f"WHERE c.oid = {relation} AND c.relacl IS NOT NULL "
            "UNION SELECT 'owner', pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c "
            f"WHERE c.oid = {relation} AND c.relowner <> (SELECT usesysid FROM pg_catalog.pg_user "
            "WHERE usename = current_user)",
            [table.schema, table.name] * 3,
        )
        return Dependents(items=[Dependent(str(kind), str(name or "")) for kind, name in rows])

    def insert_rows(self, table: TableName, names: Sequence[str], data: pa.Table) -> None:
        """Multi-row INSERTs, as many rows per statement as the protocol's 65535 parameters allow."""
        if data.num_rows == 0:
            return
        width = max(1, len(names))
        per_statement = max(1, min(1000, 65535 // width))
        columns = [data.column(i).to_pylist() for i in range(data.num_columns)]
        rows = list(zip(*columns, strict=True)) if columns else []
        head = f"INSERT INTO {self.table_sql(table)} ({', '.join(self.quote(n) for n in names)}) VALUES "
        row_sql = "(" + ", ".join([FORMAT_TOKEN] * width) + ")"
        with self.raw.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                params = [value for row in chunk for value in row]
                cursor.execute(*format_style(head + ", ".join([row_sql] * len(chunk)), params))

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """A server-side (named) cursor fetched ``batch_size`` rows at a time."""
        sql, values = bind_named(query, parameters, "format") if parameters else (query, [])
        with self.raw.cursor(name="fp_read") as cursor:
            cursor.execute(sql, values or None)
            description = cursor.description or []
            names, types, metadata = [], [], []
            for column in description:
                names.append(column.name)
                meta = None
                arrow_type: pa.DataType | None = _PG_OIDS.get(column.type_code, pa.string())
                if column.type_code == _PG_NUMERIC_OID:
                    precision, scale = column.precision, column.scale
                    if precision is not None and 1 <= precision <= 38:
                        arrow_type = pa.decimal128(precision, scale or 0)
                    else:
                        arrow_type = pa.string()
                        text = "numeric" if precision is None else f"numeric({precision},{scale or 0})"
                        meta = {SQL_TYPE_METADATA_KEY: text.encode()}
                types.append(arrow_type)
                metadata.append(meta)
            batcher = RowBatcher(names, types, metadata)
            while True:
                rows = cursor.fetchmany(batch_size)
                if not rows:
                    return
                yield batcher.batch(rows)


class RedshiftLoad(PostgresLoad):
    """PostgreSQL's load, with batches sent as multi-row INSERTs into a temporary table of loose types.

    No binary COPY (Redshift has no ``COPY FROM STDIN``); the replacement
    staging table copies the target's defaults only (``LIKE ... INCLUDING
    ALL`` is PostgreSQL's), so there are no index or constraint names to
    restore after the swap.
    """

    conn: RedshiftConnection
    like_clause = "INCLUDING DEFAULTS"
    encodes_copy = False

    def _binary_types(self, stage_types: dict[str, str]) -> dict[str, pa.DataType] | None:
        """None: every batch goes through the loose raw table."""
        return None

    def _create_raw(self) -> None:
        """The temporary raw table, typed after the loose Arrow types (and SEQ for an upsert)."""
        assert self.raw_table is not None
        loose = [(c, self.conn.arrow_sql(self._loose_field_type(c))) for c in self.columns]
        if self.mode == "upsert":
            loose.append((SEQ, "bigint"))
        self.conn.execute(self.conn.create_table_sql(self.raw_table, loose, temporary=True))
        self._raw_created = True

    def _load_loose(self, loose: pa.Table) -> None:
        """Multi-row INSERTs into the raw table."""
        assert self.raw_table is not None
        self.conn.insert_rows(self.raw_table, loose.column_names, loose)

    def _rename_dependents(self, stage_name: str) -> None:
        """Nothing to rename: ``LIKE ... INCLUDING DEFAULTS`` copies no index or constraint."""


RedshiftConnection.load = RedshiftLoad
