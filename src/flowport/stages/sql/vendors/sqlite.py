"""SQLite: the standard library's driver, a TEMP staging table, one write transaction at commit."""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.stages._duckdb import DuckSession, nested_to_json
from flowport.stages.sql._connection import Capabilities, Dependent, Dependents, Row, SqlConnection
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import SEQ, TableLoad
from flowport.stages.sql._params import bind_named
from flowport.stages.sql._rows import RowBatcher, sqlite_declared_arrow
from flowport.stages.sql._types import DeclaredType, KeyConstraint, TableConstraints

__all__ = ["SqliteConnection", "SqliteLoad"]


class SqliteConnection(SqlConnection):
    """SQLite through the standard library, in autocommit mode with explicit transactions."""

    vendor = "sqlite"
    capabilities = Capabilities(
        bulk_path="executemany into a TEMP table",
        names_ignore_case=True,
        declared_types=True,
        explicit_transactions=True,
    )

    @classmethod
    def open(cls, spec: ConnectionSpec) -> SqliteConnection:
        """Open the database file; wait up to 30 s for another writer."""
        raw = connect_dbapi(spec, autocommit=True, any_thread=True)
        raw.execute("PRAGMA busy_timeout = 30000")
        return cls(spec, raw)

    @classmethod
    def dbapi_begin(cls, raw: Any) -> None:
        """BEGIN explicitly: the executor's sqlite3 connection is in autocommit."""
        raw.execute("BEGIN")

    @classmethod
    def dbapi_commit(cls, raw: Any) -> None:
        """COMMIT explicitly."""
        raw.execute("COMMIT")

    @classmethod
    def dbapi_rollback(cls, raw: Any) -> None:
        """ROLLBACK, when a transaction is open."""
        if raw.in_transaction:
            raw.execute("ROLLBACK")

    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """Declared types spelled so that SQLite's affinity rules and readers both understand them."""
        kind = declared.kind
        if kind == "varchar":
            return f"VARCHAR({declared.length})"
        if kind == "char":
            return f"CHAR({declared.length})"
        if kind == "double":
            return "DOUBLE PRECISION"
        if kind == "numeric":
            if declared.precision is None:
                return "NUMERIC"
            return f"NUMERIC({declared.precision},{declared.scale or 0})"
        if kind == "timestamptz":
            return "TIMESTAMP WITH TIME ZONE"
        if kind in ("json", "jsonb"):
            # JSON would get NUMERIC affinity and turn the document "1" into the number 1.
            return "TEXT"
        return kind.upper()

    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """The SQLite declared type for an Arrow type."""
        t = arrow_type
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        if pa.types.is_integer(t):
            return "INTEGER"
        if pa.types.is_floating(t):
            return "REAL"
        if pa.types.is_decimal(t):
            return f"NUMERIC({t.precision},{t.scale})"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            return "BLOB"
        if pa.types.is_date(t):
            return "DATE"
        if pa.types.is_timestamp(t):
            return "TIMESTAMP WITH TIME ZONE" if t.tz is not None else "TIMESTAMP"
        return "TEXT"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        self.raw.execute(sql, tuple(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        return [tuple(r) for r in self.raw.execute(sql, tuple(params)).fetchall()]

    def commit(self) -> None:
        """Commit the open transaction."""
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """A table in ``main`` unless a schema (attached database) is given."""
        schema = table.schema or "main"
        rows = self.query(
            f"SELECT name, type FROM {self.quote(schema)}.sqlite_master WHERE name = ? COLLATE NOCASE",
            [table.name],
        )
        exact = [r for r in rows if r[0] == table.name] or rows
        if not exact:
            return TableName(table.name, schema), False
        return TableName(str(exact[0][0]), schema), str(exact[0][1]) == "table"

    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """Column names and declared types."""
        rows = self.query(
            "SELECT name, type FROM pragma_table_info(?, ?)", [table.name, table.schema or "main"]
        )
        return [(str(name), str(sql_type)) for name, sql_type in rows]

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """Unique indexes (primary keys included) that are not partial."""
        schema = table.schema or "main"
        indexes = self.query(
            'SELECT name FROM pragma_index_list(?, ?) WHERE "unique" = 1 AND partial = 0',
            [table.name, schema],
        )
        keys = []
        for (index,) in indexes:
            columns = [r[0] for r in self.query("SELECT name FROM pragma_index_info(?, ?)", [index, schema])]
            if columns and all(c is not None for c in columns):
                keys.append(frozenset(str(c) for c in columns))
        return keys

    def constraints(self, table: TableName) -> TableConstraints:
        """Columns declared NOT NULL, the primary key and unique indexes that are not partial.

        SQLite lets NULL into a primary key other than an INTEGER one (which
        makes NULL a new rowid), so only an explicit NOT NULL counts.
        """
        schema = table.schema or "main"
        columns = self.query(
            'SELECT name, "notnull", pk FROM pragma_table_info(?, ?) ORDER BY cid', [table.name, schema]
        )
        not_null = [str(name) for name, required, _ in columns if required]
        primary = [str(name) for name, _, pk in sorted(columns, key=lambda r: int(r[2])) if pk]
        keys = [KeyConstraint("PRIMARY KEY", tuple(primary))] if primary else []
        indexes = self.query(
            'SELECT name, origin FROM pragma_index_list(?, ?) WHERE "unique" = 1 AND partial = 0 '
            "ORDER BY name",
            [table.name, schema],
        )
        for index, origin in indexes:
            names = self.query("SELECT name FROM pragma_index_info(?, ?) ORDER BY seqno", [index, schema])
            found = tuple(str(r[0]) for r in names if r[0] is not None)
            if origin == "pk" or len(found) != len(names) or not found:
                continue  # the primary key again, or an index over expressions
            keys.append(KeyConstraint("UNIQUE", found, str(index)))
        return TableConstraints(not_null=not_null, keys=keys)

    @property
    def foreign_keys_enforced(self) -> bool:
        """Whether this connection enforces foreign keys (``PRAGMA foreign_keys``, off by default)."""
        rows = self.query("PRAGMA foreign_keys")
        return bool(rows and rows[0][0])

    def dependents(self, table: TableName) -> Dependents:
        """Views and triggers naming the table, and foreign keys of other tables referencing it.

        Loads into SQLite replace rows in place, so only the foreign keys
        matter, and only when this connection enforces them.
        """
        schema = table.schema or "main"
        master = f"{self.quote(schema)}.sqlite_master"
        word = re.compile(rf"(?<![\w$]){re.escape(table.name)}(?![\w$])", re.IGNORECASE)
        items = [
            Dependent(str(kind), str(name))
            for kind, name, sql in self.query(
                f"SELECT type, name, sql FROM {master} WHERE type IN ('view', 'trigger') ORDER BY type, name"
            )
            if sql and word.search(str(sql))
        ]
        rows = self.query(
            f'SELECT m.name, f.id, f."to" FROM {master} AS m, pragma_foreign_key_list(m.name, ?) AS f '
            "WHERE m.type = 'table' AND f.\"table\" = ? COLLATE NOCASE ORDER BY m.name, f.id, f.seq",
            [schema, table.name],
        )
        keys: dict[tuple[str, int], list[str | None]] = {}
        for name, constraint, column in rows:
            keys.setdefault((str(name), int(constraint)), []).append(None if column is None else str(column))
        items += [Dependent("foreign key", f"of {name}") for name, _ in keys]
        referenced: list[tuple[str, ...]] = []
        if keys and self.foreign_keys_enforced:
            primary = self.constraints(table).primary_key
            for columns in keys.values():
                if all(c is not None for c in columns):
                    referenced.append(tuple(str(c) for c in columns))
                elif primary is not None:  # "REFERENCES parent" without columns: the primary key
                    referenced.append(primary.columns)
        return Dependents(items=items, referenced_keys=list(dict.fromkeys(referenced)))

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """fetchmany over a cursor; column types from declarations when known, else from values."""
        sql, values = bind_named(query, parameters, "qmark") if parameters else (query, [])
        cursor = self.raw.execute(sql, tuple(values))
        try:
            names = [str(d[0]) for d in cursor.description or []]
            types = [sqlite_declared_arrow((declared or {}).get(n, "")) for n in names]
            batcher = RowBatcher(names, types)
            while True:
                rows = cursor.fetchmany(batch_size)
                if not rows:
                    return
                yield batcher.batch(rows)
        finally:
            cursor.close()


def _sqlite_ready(data: pa.Table, session: DuckSession) -> pa.Table:
    """``data`` with values sqlite3 binds: decimals and times as text, nested values as JSON."""
    data = nested_to_json(session, data)
    for index, f in enumerate(data.schema):
        t = f.type
        target: pa.DataType | None = None
        if pa.types.is_decimal(t) or (pa.types.is_temporal(t) and not pa.types.is_duration(t)):
            target = pa.string()
        elif pa.types.is_duration(t):
            target = pa.int64()
        elif pa.types.is_float16(t):
            target = pa.float32()
        if target is not None:
            data = data.set_column(index, pa.field(f.name, target), pc.cast(data.column(index), target))
    return data


class SqliteLoad(TableLoad):
    """SQLite: batches go to a TEMP table (private to the connection, no lock on the database).

    At commit one ``BEGIN IMMEDIATE`` transaction moves the rows into the
    target (``replace`` deletes the target's rows first, keeping its
    definition, views and triggers; a merge on the key when a foreign key
    this connection enforces references it), so readers see the old or the
    new rows, never a mix.
    """

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self.stage_table: TableName | None = None
        self._duck: DuckSession | None = None

    def _create_stage(self) -> None:
        self.stage_table = TableName(self.conn.work_table(self.target, "stage", self.run_id).name, "temp")
        columns = self._ddl_columns() + ([(SEQ, "INTEGER")] if self.mode == "upsert" else [])
        self.conn.execute(self.conn.create_table_sql(self.stage_table, columns))

    def _load(self, data: pa.Table) -> None:
        assert self.stage_table is not None
        if self._duck is None:
            self._duck = DuckSession(shared=True)
        ready = _sqlite_ready(data, self._duck)
        columns = [ready.column(i).to_pylist() for i in range(ready.num_columns)]
        names = ", ".join(self._q(n) for n in ready.column_names)
        marks = ", ".join("?" for _ in ready.column_names)
        raw = self.conn.raw
        raw.execute("BEGIN")
        try:
            raw.executemany(
                f"INSERT INTO {self.conn.table_sql(self.stage_table)} ({names}) VALUES ({marks})",
                zip(*columns, strict=True),
            )
            raw.execute("COMMIT")
        except BaseException:
            self.conn.rollback()
            raise

    def _publish(self) -> None:
        conn = self.conn
        target_sql = conn.table_sql(self.target)
        conn.execute("BEGIN IMMEDIATE")
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
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self._discard()

    def _reset(self, column: str) -> str:
        # SQLite has no DEFAULT in UPDATE: the column's default expression from the catalog, else NULL.
        rows = self.conn.query(
            "SELECT dflt_value FROM pragma_table_info(?, ?) WHERE name = ?",
            [self.target.name, self.target.schema or "main", column],
        )
        return f"({rows[0][0]})" if rows and rows[0][0] is not None else "NULL"

    def _discard(self) -> None:
        self.conn.rollback()
        if self.stage_table is not None:
            self.conn.execute(f"DROP TABLE IF EXISTS {self.conn.table_sql(self.stage_table)}")
            self.stage_table = None

    def _cleanup(self) -> None:
        if self._duck is not None:
            self._duck.close()
            self._duck = None


SqliteConnection.load = SqliteLoad
