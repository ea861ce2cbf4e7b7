"""DuckDB: its own Python API, Arrow in and out, one transaction around the whole load."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.stages.sql._connection import Capabilities, Dependent, Dependents, Row, SqlConnection
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import SEQ, TableLoad
from flowport.stages.sql._params import bind_named
from flowport.stages.sql._types import DeclaredType, KeyConstraint, TableConstraints

__all__ = ["DuckDbConnection", "DuckDbLoad"]


class DuckDbConnection(SqlConnection):
    """A DuckDB database file: Arrow in and out without conversion."""

    vendor = "duckdb"
    capabilities = Capabilities(
        bulk_path="INSERT ... SELECT from the Arrow batch",
        names_ignore_case=True,
        explicit_transactions=True,
    )

    @classmethod
    def open(cls, spec: ConnectionSpec) -> DuckDbConnection:
        """Open the database file in UTC, its SQL confined to that file."""
        raw = connect_dbapi(spec)  # sandboxed and in UTC already
        return cls(spec, raw)

    @classmethod
    def dbapi_begin(cls, raw: Any) -> None:
        """BEGIN explicitly: the executor's DuckDB connection is in autocommit."""
        raw.begin()

    @classmethod
    def dbapi_run(cls, raw: Any, statement: str) -> None:
        """On the connection itself: a DuckDB cursor is a separate connection, outside its transaction."""
        raw.execute(statement)

    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """Declared types in DuckDB spelling."""
        kind = declared.kind
        if kind in ("text", "varchar", "char"):
            return "VARCHAR"
        if kind == "numeric":
            if declared.precision is None:
                return "DECIMAL(38,10)"
            if declared.precision > 38:
                return "DOUBLE"
            return f"DECIMAL({declared.precision},{declared.scale or 0})"
        if kind == "timestamptz":
            return "TIMESTAMPTZ"
        if kind in ("json", "jsonb"):
            return "JSON"
        return kind.upper()

    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """DuckDB's own type for an Arrow type (asked from DuckDB, nested types included)."""
        empty = pa.table({"c": pa.array([], arrow_type)})
        self.raw.register("__fp_type_probe", empty)
        try:
            rows = self.raw.execute("DESCRIBE SELECT * FROM __fp_type_probe").fetchall()
        finally:
            self.raw.unregister("__fp_type_probe")
        return str(rows[0][1])

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        self.raw.execute(sql, list(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        return [tuple(r) for r in self.raw.execute(sql, list(params)).fetchall()]

    def begin(self) -> None:
        """Start a transaction."""
        self.raw.begin()

    def commit(self) -> None:
        """Commit."""
        self.raw.commit()

    def rollback(self) -> None:
        """Roll back (DuckDB complains when there is no transaction: ignored)."""
        try:
            self.raw.rollback()
        except Exception as exc:  # no transaction open
            if "no transaction" not in str(exc).lower():
                raise

    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """A table in the current schema unless one is given."""
        schema = table.schema
        if schema is None:
            schema = str(self.query("SELECT current_schema()")[0][0])
        rows = self.query(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)",
            [schema, table.name],
        )
        exact = [r for r in rows if r[0] == table.name] or rows
        if not exact:
            return TableName(table.name, schema), False
        return TableName(str(exact[0][0]), schema), True

    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """Column names and DuckDB types."""
        rows = self.query(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
            "AND lower(schema_name) = lower(?) AND table_name = ? ORDER BY column_index",
            [table.schema, table.name],
        )
        return [(str(name), str(sql_type)) for name, sql_type in rows]

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """Primary key and unique constraints."""
        rows = self.query(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
            "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            [table.schema, table.name],
        )
        return [frozenset(str(c) for c in columns) for (columns,) in rows]

    def constraints(self, table: TableName) -> TableConstraints:
        """NOT NULL columns, the primary key and unique constraints."""
        not_null = self.query(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND lower(schema_name) = lower(?) AND table_name = ? AND NOT is_nullable ORDER BY column_index",
            [table.schema, table.name],
        )
        rows = self.query(
            "SELECT constraint_name, constraint_type, constraint_column_names FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
            "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE') "
            "ORDER BY constraint_type = 'PRIMARY KEY' DESC, constraint_index",
            [table.schema, table.name],
        )
        keys = [
            KeyConstraint(str(kind), tuple(str(c) for c in columns), name) for name, kind, columns in rows
        ]
        return TableConstraints(not_null=[str(r[0]) for r in not_null], keys=keys)

    def dependents(self, table: TableName) -> Dependents:
        """Views naming the table and the foreign keys referencing it (DuckDB always enforces them).

        Loads into DuckDB replace rows in place, so only the foreign keys matter.
        """
        views = self.query(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
            "AND database_name = current_database() AND contains(lower(sql), lower(?)) ORDER BY 1, 2",
            [table.name],
        )
        rows = self.query(
            "SELECT table_name, constraint_name, referenced_column_names FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND constraint_type = 'FOREIGN KEY' "
            "AND lower(referenced_table) = lower(?) ORDER BY 1, 2",
            [table.name],
        )
        items = [Dependent("view", f"{schema}.{name}") for schema, name in views]
        items += [Dependent("foreign key", f"{constraint} of {name}") for name, constraint, _ in rows]
        referenced = [tuple(str(c) for c in columns) for _, _, columns in rows]
        return Dependents(items=items, referenced_keys=list(dict.fromkeys(referenced)))

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """DuckDB's Arrow reader: batches straight from the query."""
        sql, values = bind_named(query, parameters, "qmark") if parameters else (query, [])
        relation = self.raw.sql(sql, params=values or None)
        if relation is None:
            return
        reader = relation.to_arrow_reader(batch_size)
        try:
            yield from reader
        finally:
            reader.close()


class DuckDbLoad(TableLoad):
    """DuckDB: the staging table, the load and the publish are one transaction (MVCC isolates readers).

    ``replace`` deletes the target's rows and inserts the staged ones (a
    merge on the key when a foreign key references the target).
    """

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self.stage_table: TableName | None = None
        self._in_transaction = False

    def _transaction(self) -> None:
        if not self._in_transaction:
            self.conn.begin()
            self._in_transaction = True

    def _create_stage(self) -> None:
        self._transaction()
        self.stage_table = self.conn.work_table(self.target, "stage", self.run_id)
        columns = self._ddl_columns() + ([(SEQ, "BIGINT")] if self.mode == "upsert" else [])
        self.conn.execute(self.conn.create_table_sql(self.stage_table, columns))

    def _load(self, data: pa.Table) -> None:
        assert self.stage_table is not None
        raw = self.conn.raw
        names = ", ".join(self._q(n) for n in data.column_names)
        raw.register("__fp_batch", data)
        try:
            stage_sql = self.conn.table_sql(self.stage_table)
            raw.execute(f"INSERT INTO {stage_sql} ({names}) SELECT {names} FROM __fp_batch")
        finally:
            raw.unregister("__fp_batch")

    def _publish(self) -> None:
        conn = self.conn
        self._transaction()
        target_sql = conn.table_sql(self.target)
        try:
            created = False
            if not self.exists:
                conn.execute(self._create_target_sql(self.target))
                created = True
            if self.stage_table is None:  # replace with no record: the target is emptied
                conn.execute(f"DELETE FROM {target_sql}")
            else:
                stage_sql = conn.table_sql(self.stage_table)
                for statement in self._publish_statements(target_sql, stage_sql, created=created):
                    conn.execute(statement)
                conn.execute(f"DROP TABLE {stage_sql}")
            conn.commit()
            self._in_transaction = False
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self.conn.rollback()
        self.stage_table = None


DuckDbConnection.load = DuckDbLoad
