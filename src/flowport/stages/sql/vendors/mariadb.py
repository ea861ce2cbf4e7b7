"""MariaDB and MySQL: PyMySQL, LOAD DATA LOCAL INFILE into a staging table, an atomic RENAME TABLE."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flowport.connections.drivers import allow_local_infile, connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.errors import StageError, ValidationFailed
from flowport.stages._duckdb import DuckSession, nested_to_json, quote_ident, sql_literal
from flowport.stages.sql._connection import (
    Capabilities,
    Dependent,
    Dependents,
    Row,
    SqlConnection,
    format_style,
    key_constraints,
)
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import RENAME_SWAP, SEQ, SOURCE_ALIAS, TARGET_ALIAS, TableLoad, log
from flowport.stages.sql._params import bind_named
from flowport.stages.sql._rows import RowBatcher
from flowport.stages.sql._types import DeclaredType, TableConstraints

__all__ = ["MariaDbConnection", "MariaDbLoad"]

_MY_UNSIGNED = 32
_MY_BINARY_CHARSET = 63
_MY_TEXTUAL = {15, 249, 250, 251, 252, 253, 254}


def _my_arrow(type_code: int, flags: int, charset: int, length: int, scale: int) -> pa.DataType | None:
    unsigned = bool(flags & _MY_UNSIGNED)
    if type_code == 1:
        return pa.int16() if unsigned else pa.int8()
    if type_code == 2:
        return pa.int32() if unsigned else pa.int16()
    if type_code == 9:
        return pa.int32()
    if type_code == 3:
        return pa.int64() if unsigned else pa.int32()
    if type_code == 8:
        return pa.decimal128(20, 0) if unsigned else pa.int64()
    if type_code == 4:
        return pa.float32()
    if type_code == 5:
        return pa.float64()
    if type_code in (0, 246):
        precision = length - (1 if scale else 0) - (0 if unsigned else 1)
        if 1 <= precision <= 38 and scale <= precision:
            return pa.decimal128(precision, scale)
        return pa.string()
    if type_code in (10, 14):
        return pa.date32()
    if type_code in (7, 12):
        return pa.timestamp("us")
    if type_code == 11:
        return pa.duration("us")
    if type_code == 13:
        return pa.int16()
    if type_code in (16, 255):
        return pa.binary()
    if type_code in _MY_TEXTUAL:
        return pa.binary() if charset == _MY_BINARY_CHARSET else pa.string()
    if type_code == 6:
        return None
    return pa.string()


class MariaDbConnection(SqlConnection):
    """MariaDB and MySQL through PyMySQL (autocommit; transactions are explicit)."""

    vendor = "mysql"
    capabilities = Capabilities(
        bulk_path="LOAD DATA LOCAL INFILE (multi-row INSERT when the server refuses it)",
        upsert="on duplicate key",
        replace_by_rename=True,  # one atomic multi-table RENAME TABLE
        quote_char="`",
        identifier_limit=64,
        param_style="format",
        backslash_escapes=True,
        names_ignore_case=True,
    )

    @classmethod
    def open(cls, spec: ConnectionSpec) -> MariaDbConnection:
        """Connect in autocommit mode, in UTC and with strict value checks."""
        connection = cls(spec, connect_dbapi(spec, autocommit=True))
        try:
            connection.execute("SET time_zone = '+00:00'")
            # Without a strict mode MariaDB stores a bad value as 0 or '' with
            # a warning; a load must fail instead.
            connection.execute(
                "SET SESSION sql_mode = IF(@@SESSION.sql_mode = '', 'STRICT_ALL_TABLES', "
                "CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))"
            )
        except BaseException:
            connection.close()
            raise
        return connection

    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """Declared types in MariaDB spelling (timestamps are DATETIME(6), stored in UTC)."""
        kind = declared.kind
        if kind == "text":
            return "VARCHAR(255)" if key else "LONGTEXT"
        if kind == "varchar":
            return f"VARCHAR({declared.length})"
        if kind == "char":
            return f"CHAR({min(declared.length or 1, 255)})"
        if kind == "integer":
            return "INT"
        if kind == "real":
            return "FLOAT"
        if kind == "numeric":
            if declared.precision is None:
                return "DECIMAL(38,10)"
            precision = min(declared.precision, 65)
            return f"DECIMAL({precision},{min(declared.scale or 0, 30, precision)})"
        if kind in ("timestamp", "timestamptz"):
            precision = declared.precision if declared.precision is not None else 6
            return f"DATETIME({min(precision, 6)})"
        if kind in ("json", "jsonb"):
            return "JSON"
        return kind.upper()  # SMALLINT, BIGINT, DOUBLE, BOOLEAN, DATE

    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """The MariaDB column type for an Arrow type (text keys are VARCHAR(255): indexable)."""
        t = arrow_type
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        for check, name in (
            (pa.types.is_int8, "TINYINT"),
            (pa.types.is_int16, "SMALLINT"),
            (pa.types.is_int32, "INT"),
            (pa.types.is_int64, "BIGINT"),
            (pa.types.is_uint8, "TINYINT UNSIGNED"),
            (pa.types.is_uint16, "SMALLINT UNSIGNED"),
            (pa.types.is_uint32, "INT UNSIGNED"),
            (pa.types.is_uint64, "BIGINT UNSIGNED"),
        ):
            if check(t):
                return name
        if pa.types.is_float16(t) or pa.types.is_float32(t):
            return "FLOAT"
        if pa.types.is_float64(t):
            return "DOUBLE"
        if pa.types.is_decimal(t):
            precision = min(t.precision, 65)
            return f"DECIMAL({precision},{min(t.scale, 30, precision)})"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            return "VARBINARY(255)" if key else "LONGBLOB"
        if pa.types.is_date(t):
            return "DATE"
        if pa.types.is_timestamp(t):
            return "DATETIME(6)"
        if pa.types.is_time(t) or pa.types.is_duration(t):
            return "TIME(6)"
        if pa.types.is_nested(t):
            return "JSON"
        return "VARCHAR(255)" if key else "LONGTEXT"

    def table_options(self) -> str:
        """utf8mb4 whatever the database default, so any text loads."""
        return " DEFAULT CHARSET=utf8mb4"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        with self.raw.cursor() as cursor:
            cursor.execute(*format_style(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        with self.raw.cursor() as cursor:
            cursor.execute(*format_style(sql, params))
            return [tuple(r) for r in cursor.fetchall()]

    def begin(self) -> None:
        """Start an explicit transaction (DDL would commit it implicitly: none is run inside)."""
        self.execute("START TRANSACTION")

    def commit(self) -> None:
        """Commit."""
        self.raw.commit()

    def rollback(self) -> None:
        """Roll back."""
        self.raw.rollback()

    def warnings(self) -> list[tuple[str, int, str]]:
        """The warnings and errors of the last statement (notes left out)."""
        rows = self.query("SHOW WARNINGS")
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows if str(r[0]) in ("Warning", "Error")]

    def _database(self, table: TableName) -> str:
        if table.schema is not None:
            return table.schema
        rows = self.query("SELECT DATABASE()")
        if not rows or rows[0][0] is None:
            raise ValidationFailed(
                f"table '{table.name}' names no database and connection '{self.spec.name}' has no "
                "default database; write 'database.table' or set the connection's defaultDatabase"
            )
        return str(rows[0][0])

    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """The database from configuration or the connection's default."""
        database = self._database(table)
        p = self.param(1)
        rows = self.query(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {p} AND TABLE_NAME = {p}",
            [database, table.name],
        )
        exact = [r for r in rows if r[0] == table.name] or rows
        if not exact:
            return TableName(table.name, database), False
        return TableName(str(exact[0][0]), database), str(exact[0][1]) == "BASE TABLE"

    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """Column names and full column types (``decimal(10,2)``, ``varchar(100)``)."""
        p = self.param(1)
        rows = self.query(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {p} AND TABLE_NAME = {p} ORDER BY ORDINAL_POSITION",
            [self._database(table), table.name],
        )
        return [(str(name), str(sql_type)) for name, sql_type in rows]

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """Primary and unique keys."""
        p = self.param(1)
        rows = self.query(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            f"WHERE TABLE_SCHEMA = {p} AND TABLE_NAME = {p} AND NON_UNIQUE = 0",
            [self._database(table), table.name],
        )
        found: dict[str, set[str]] = {}
        for index, column in rows:
            found.setdefault(str(index), set()).add(str(column))
        return [frozenset(columns) for columns in found.values()]

    def constraints(self, table: TableName) -> TableConstraints:
        """NOT NULL columns, the primary key and unique indexes (prefix indexes left out)."""
        p = self.param(1)
        database = self._database(table)
        not_null = self.query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {p} AND TABLE_NAME = {p} AND IS_NULLABLE = 'NO' ORDER BY ORDINAL_POSITION",
            [database, table.name],
        )
        rows = self.query(
            "SELECT INDEX_NAME, INDEX_NAME = 'PRIMARY', COLUMN_NAME FROM information_schema.STATISTICS s "
            f"WHERE TABLE_SCHEMA = {p} AND TABLE_NAME = {p} AND NON_UNIQUE = 0 AND NOT EXISTS ("
            "SELECT 1 FROM information_schema.STATISTICS x WHERE x.TABLE_SCHEMA = s.TABLE_SCHEMA "
            "AND x.TABLE_NAME = s.TABLE_NAME AND x.INDEX_NAME = s.INDEX_NAME AND x.SUB_PART IS NOT NULL) "
            "ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            [database, table.name],
        )
        return TableConstraints(not_null=[str(r[0]) for r in not_null], keys=key_constraints(rows))

    def dependents(self, table: TableName) -> Dependents:
        """Foreign keys (either way) and triggers, which ``RENAME TABLE`` takes along to the old table
        (and ``CREATE TABLE ... LIKE`` does not copy). Views are listed but do not block a swap:
        MariaDB resolves them by name when they are queried, so they read the new table.
        TRUNCATE is DDL here (it commits), so it is never offered.
        """
        p = self.param(1)
        database = self._database(table)
        needle = f"{self.quote(database)}.{self.quote(table.name)}"
        items = [
            Dependent("view", f"{schema}.{name}", blocks_swap=False)
            for schema, name in self.query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS "
                f"WHERE LOCATE({p}, VIEW_DEFINITION) > 0 ORDER BY TABLE_SCHEMA, TABLE_NAME",
                [needle],
            )
        ]
        referencing = self.query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_COLUMN_NAME "
            "FROM information_schema.KEY_COLUMN_USAGE "
            f"WHERE REFERENCED_TABLE_SCHEMA = {p} AND REFERENCED_TABLE_NAME = {p} "
            "ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, POSITION_IN_UNIQUE_CONSTRAINT",
            [database, table.name],
        )
        keys: dict[tuple[str, str, str], list[str]] = {}
        for schema, name, constraint, column in referencing:
            keys.setdefault((str(schema), str(name), str(constraint)), []).append(str(column))
        items += [Dependent("foreign key", f"{c} of {s}.{n}") for s, n, c in keys]
        outgoing = self.query(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            f"WHERE CONSTRAINT_SCHEMA = {p} AND TABLE_NAME = {p} ORDER BY CONSTRAINT_NAME",
            [database, table.name],
        )
        items += [Dependent("foreign key", f"{r[0]} of {database}.{table.name}") for r in outgoing]
        triggers = self.query(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
            f"WHERE EVENT_OBJECT_SCHEMA = {p} AND EVENT_OBJECT_TABLE = {p} ORDER BY TRIGGER_NAME",
            [database, table.name],
        )
        items += [Dependent("trigger", str(r[0])) for r in triggers]
        return Dependents(
            items=list(dict.fromkeys(items)),
            referenced_keys=list(dict.fromkeys(tuple(k) for k in keys.values())),
        )

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """An unbuffered cursor: rows come from the server as they are fetched."""
        import pymysql.cursors

        if parameters:
            sql, values = bind_named(query, parameters, "format", backslash_escapes=True)
            args: tuple[Any, ...] | None = tuple(values)
        else:
            sql, args = query, None
        cursor = self.raw.cursor(pymysql.cursors.SSCursor)
        finished = False
        try:
            cursor.execute(sql, args)
            description = cursor.description or []
            fields = getattr(getattr(cursor, "_result", None), "fields", None) or []
            names, types = [], []
            for index, column in enumerate(description):
                names.append(str(column[0]))
                if index < len(fields):
                    f = fields[index]
                    types.append(_my_arrow(f.type_code, f.flags, f.charsetnr, f.length, f.scale))
                else:
                    types.append(None)
            batcher = RowBatcher(names, types)
            while True:
                rows = cursor.fetchmany(batch_size)
                if not rows:
                    finished = True
                    return
                yield batcher.batch(rows)
        finally:
            # Closing an unbuffered cursor reads every remaining row first;
            # when the reader stopped early the connection is closed instead.
            if finished:
                cursor.close()
            else:
                result = getattr(cursor, "_result", None)
                self.close()
                # PyMySQL would otherwise try to drain the result from the closed socket
                # when the cursor and result are garbage-collected.
                if result is not None:
                    result.unbuffered_active = False
                cursor._result = None


# Server answers meaning "LOAD DATA LOCAL is disabled" (MySQL 8 and MariaDB spell it differently).
_LOCAL_INFILE_REFUSED = {1148, 3948, 4166}


class MariaDbLoad(TableLoad):
    """MariaDB: batches go to a staging table with ``LOAD DATA LOCAL INFILE``.

    MariaDB commits DDL implicitly, so the swap cannot be a transaction:
    ``replace`` loads a real staging table and swaps it in with one
    ``RENAME TABLE target TO old, stage TO target`` (atomic: readers see the
    old or the new table, never neither), then drops the old one. Views
    survive the swap (MariaDB resolves them by name); foreign keys and
    triggers would follow the old table, so a target that has them gets its
    rows replaced in place instead: DELETE + INSERT ... SELECT from a
    temporary staging table in one transaction (TRUNCATE would commit), or
    a merge on the referenced key. ``append``/``upsert`` load a temporary
    table (invisible to other sessions, gone with the session) and INSERT
    from it in one transaction. A target that does not exist yet is filled
    under a work name and renamed into place, so it never appears half-filled.
    """

    conn: MariaDbConnection

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self._duck: DuckSession | None = None
        self._directory: Path | None = None
        self.stage_table: TableName | None = None
        self.temporary = self.mode != "replace"
        #: LOAD DATA LOCAL INFILE until the server refuses it (local_infile off), then multi-row INSERTs.
        self.load_data = True

    def _create_stage(self) -> None:
        self.stage_table = self.conn.work_table(self.target, "stage", self.run_id)
        stage_sql = self.conn.table_sql(self.stage_table)
        target_sql = self.conn.table_sql(self.target)
        self.temporary = self.mode != "replace" or self.in_place
        if self.mode == "replace" and not self.in_place:
            if self.exists:
                self.conn.execute(f"CREATE TABLE {stage_sql} LIKE {target_sql}")
            else:
                self.conn.execute(self._create_target_sql(self.stage_table))
            return
        extra = [(SEQ, "BIGINT")] if self.mode == "upsert" else []
        if self.exists:
            # Typed like the target, so LOAD DATA converts each value as the target would.
            extra_sql = f"({', '.join(f'{self._q(n)} {t}' for n, t in extra)}) " if extra else ""
            self.conn.execute(
                f"CREATE TEMPORARY TABLE {stage_sql} {extra_sql}"
                f"SELECT {self._column_list()} FROM {target_sql} LIMIT 0"
            )
        else:
            self.conn.execute(
                self.conn.create_table_sql(self.stage_table, self._ddl_columns() + extra, temporary=True)
            )

    def _csv_expressions(self, schema: pa.Schema) -> tuple[list[str], list[str], list[str]]:
        """DuckDB expressions rendering each column as MariaDB reads it, the LOAD DATA column
        list and the SET clauses (binary values travel as hex)."""
        selects, targets, sets = [], [], []
        for index, f in enumerate(schema):
            source = quote_ident(f.name)
            t = f.type
            name = self._q(f.name)
            if pa.types.is_boolean(t):
                selects.append(f"CAST({source} AS INTEGER)")
            elif pa.types.is_timestamp(t) and t.tz is not None:
                selects.append(f"CAST({source} AT TIME ZONE 'UTC' AS VARCHAR)")
            elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
                selects.append(f"hex({source})")
                variable = f"@fp_v{index}"
                targets.append(variable)
                sets.append(f"{name} = UNHEX({variable})")
                continue
            elif pa.types.is_nested(t):
                selects.append(f"to_json({source})::VARCHAR")
            elif pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_timestamp(t):
                selects.append(f"CAST({source} AS VARCHAR)")
            else:
                selects.append(source)
            targets.append(name)
        return selects, targets, sets

    def _load(self, data: pa.Table) -> None:
        assert self.stage_table is not None
        if self._duck is None:
            # The batch CSV files are written by the session into its own scratch folder.
            self._duck = DuckSession(scratch=True)
            self._directory = self._duck.directory
        if self.load_data:
            try:
                self._load_data(data)
                return
            except Exception as exc:
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
                if code not in _LOCAL_INFILE_REFUSED:
                    raise
                log.info(
                    "stage %s: the server refuses LOAD DATA LOCAL INFILE; using multi-row INSERTs", self.stage
                )
                self.load_data = False
        self._insert_rows(data)

    def _insert_rows(self, data: pa.Table) -> None:
        """Multi-row INSERTs (PyMySQL's executemany packs many rows per statement)."""
        assert self.stage_table is not None and self._duck is not None
        data = nested_to_json(self._duck, data)
        for index, f in enumerate(data.schema):
            if pa.types.is_timestamp(f.type) and f.type.tz is not None:
                # DATETIME has no zone: the UTC wall-clock time, as LOAD DATA writes it.
                naive = pa.timestamp(f.type.unit)
                data = data.set_column(index, pa.field(f.name, naive), pc.cast(data.column(index), naive))
        names = ", ".join(self._q(n) for n in data.column_names)
        marks = ", ".join(["%s"] * data.num_columns)
        table_sql = self.conn.table_sql(self.stage_table).replace("%", "%%")
        statement = f"INSERT INTO {table_sql} ({names.replace('%', '%%')}) VALUES ({marks})"
        columns = [data.column(i).to_pylist() for i in range(data.num_columns)]
        with self.conn.raw.cursor() as cursor:
            cursor.executemany(statement, list(zip(*columns, strict=True)))

    def _load_data(self, data: pa.Table) -> None:
        assert self._duck is not None and self.stage_table is not None
        assert self._directory is not None
        path = self._directory / "batch.csv"
        selects, targets, sets = self._csv_expressions(data.schema)
        # Every value quoted and NULL written bare: MariaDB reads an unquoted NULL as
        # NULL and "NULL" as the text, so the two never mix.
        with self._duck.registered("__fp_batch", data):
            self._duck.execute(
                f"COPY (SELECT {', '.join(selects)} FROM __fp_batch) TO {sql_literal(str(path))} "
                "(FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR 'NULL', "
                "FORCE_QUOTE *)"
            )
        statement = (
            f"LOAD DATA LOCAL INFILE {self.conn.param(1)} INTO TABLE {self.conn.table_sql(self.stage_table)} "
            "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
            f"LINES TERMINATED BY '\\n' ({', '.join(targets)})"
        )
        if sets:
            statement += " SET " + ", ".join(sets)
        try:
            # The driver sends the server this file and no other, whatever the server asks for.
            with allow_local_infile(self.conn.raw, path):
                self.conn.execute(statement, [str(path)])
            # With LOCAL, MariaDB turns bad values into warnings and carries on.
            problems = self.conn.warnings()
        finally:
            path.unlink(missing_ok=True)
        if problems:
            level, code, message = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StageError(self.stage, f"MariaDB rejected a record: {level} {code}: {message}{more}")

    def _publish(self) -> None:
        conn = self.conn
        target_sql = conn.table_sql(self.target)
        plan = self._plan(swap=not self.in_place) if self.mode == "replace" and self.exists else None
        if plan is not None and plan.strategy != RENAME_SWAP:
            stage_sql = conn.table_sql(self.stage_table) if self.stage_table is not None else None
            self._in_transaction(self._in_place_statements(target_sql, stage_sql, plan))
            self._discard()
            return
        if self.mode == "replace":
            if self.stage_table is None:  # no record arrived: the target is emptied
                self.stage_table = conn.work_table(self.target, "stage", self.run_id)
                conn.execute(f"CREATE TABLE {conn.table_sql(self.stage_table)} LIKE {target_sql}")
            stage_sql = conn.table_sql(self.stage_table)
            if self.exists:
                old_sql = conn.table_sql(conn.work_table(self.target, "old", self.run_id))
                conn.execute(f"RENAME TABLE {target_sql} TO {old_sql}, {stage_sql} TO {target_sql}")
                self.stage_table = None
                conn.execute(f"DROP TABLE {old_sql}")
            else:
                conn.execute(f"RENAME TABLE {stage_sql} TO {target_sql}")
                self.stage_table = None
            return
        assert self.stage_table is not None
        stage_sql = conn.table_sql(self.stage_table)
        if self.exists:
            self._in_transaction(self._publish_statements(target_sql, stage_sql, created=False))
        else:
            fresh = conn.work_table(self.target, "new", self.run_id)
            fresh_sql = conn.table_sql(fresh)
            conn.execute(self._create_target_sql(fresh))
            try:
                conn.execute(self._insert(fresh_sql, stage_sql))
                conn.execute(f"RENAME TABLE {fresh_sql} TO {target_sql}")
            except BaseException:
                conn.execute(f"DROP TABLE IF EXISTS {fresh_sql}")
                raise
        conn.execute(f"DROP TEMPORARY TABLE IF EXISTS {stage_sql}")
        self.stage_table = None

    def _in_transaction(self, statements: Sequence[str]) -> None:
        """Run DML statements in one transaction (no DDL in between: it would commit)."""
        conn = self.conn
        conn.begin()
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _reset(self, column: str) -> str:
        return f"DEFAULT({self._q(column)})"

    def _merge_upsert(self, target_sql: str, source: str, key: Sequence[str]) -> str:
        s = self._q(SOURCE_ALIAS)
        columns = self._column_list()
        updates = [c for c in self.columns if c not in key] or list(key[:1])
        assignments = [f"{self._q(c)} = VALUES({self._q(c)})" for c in updates]
        assignments += [f"{self._q(c)} = {self._reset(c)}" for c in self._unloaded()]
        return (
            f"INSERT INTO {target_sql} ({columns}) SELECT {columns} FROM ({source}) AS {s} "
            f"ON DUPLICATE KEY UPDATE {', '.join(assignments)}"
        )

    def _upsert_statements(self, target_sql: str, stage_sql: str, *, unique: bool) -> list[str]:
        source = self._source(stage_sql)
        s = self._q(SOURCE_ALIAS)
        columns = self._column_list()
        values = self._values()
        if unique:
            updates = values or self.keys[:1]
            action = ", ".join(f"{self._q(c)} = VALUES({self._q(c)})" for c in updates)
            return [
                f"INSERT INTO {target_sql} ({columns}) SELECT {columns} FROM ({source}) AS {s} "
                f"ON DUPLICATE KEY UPDATE {action}"
            ]
        statements = []
        if values:
            t = self._q(TARGET_ALIAS)
            assignments = ", ".join(f"{t}.{self._q(c)} = {s}.{self._q(c)}" for c in values)
            statements.append(
                f"UPDATE {target_sql} AS {t} JOIN ({source}) AS {s} ON {self._key_match()} SET {assignments}"
            )
        statements.append(self._insert_missing(target_sql, source))
        return statements

    def _discard(self) -> None:
        if self.stage_table is not None:
            kind = "TEMPORARY TABLE" if self.temporary else "TABLE"
            self.conn.execute(f"DROP {kind} IF EXISTS {self.conn.table_sql(self.stage_table)}")
            self.stage_table = None

    def _cleanup(self) -> None:
        if self._duck is not None:
            self._duck.close()
            self._duck = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


MariaDbConnection.load = MariaDbLoad
