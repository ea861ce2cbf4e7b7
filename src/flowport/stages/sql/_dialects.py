"""One class per SQL vendor: quoting, column types, catalog look-ups, statements and streaming reads.

Each :class:`SqlConnection` wraps the driver the vendor reads and loads
fastest with: ADBC for PostgreSQL (binary ``COPY`` both ways), psycopg for
Redshift (no ``COPY FROM STDIN`` there), PyMySQL for MariaDB/MySQL, the
standard library for SQLite and DuckDB's own Python API.

Identifiers go through :meth:`SqlConnection.quote` without exception; values
always travel as bound parameters.

Besides columns, the catalog look-ups answer two questions a table load
asks: which constraints an existing table enforces (:meth:`SqlConnection.constraints`)
and what depends on it (:meth:`SqlConnection.dependents`: views, foreign
keys, triggers, grants...), which decides how a ``replace`` publishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pyarrow as pa

from flowport.connections.drivers import connect_adbc, connect_dbapi, scrub_message
from flowport.connections.spec import ConnectionSpec
from flowport.errors import ValidationFailed
from flowport.stages._stream import FedStream
from flowport.stages.sql._identifiers import TableName, check_identifier, work_table_name
from flowport.stages.sql._params import ParamStyle, bind_named
from flowport.stages.sql._rows import RowBatcher, sqlite_declared_arrow
from flowport.stages.sql._types import (
    DeclaredType,
    KeyConstraint,
    TableConstraints,
    declared_type,
    decode_extensions,
)
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY, DefaultValue

__all__ = [
    "Dependent",
    "Dependents",
    "DuckDbConnection",
    "MariaDbConnection",
    "PostgresConnection",
    "RedshiftConnection",
    "SqlConnection",
    "SqliteConnection",
    "open_connection",
]

Row = tuple[Any, ...]

_FORMAT_TOKEN = "\x00"


def _format_style(sql: str, params: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    """A statement written with :meth:`SqlConnection.param` as the driver's ``%s`` form."""
    if not params:
        return sql, None
    return sql.replace("%", "%%").replace(_FORMAT_TOKEN, "%s"), tuple(params)


def _param_text(value: Any) -> str | None:
    """A parameter value as the text PostgreSQL parses into the type it inferred."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Dependent:
    """Something outside a table's own definition that a rename swap would break or lose.

    ``kind`` says what it is (view, foreign key, trigger, grants...);
    ``blocks_swap`` is False for dependents the vendor resolves by name, which
    a swap keeps (MariaDB views).
    """

    kind: str
    name: str = ""
    blocks_swap: bool = True

    def __str__(self) -> str:
        return f"{self.kind} {self.name}".strip()


@dataclass
class Dependents:
    """What depends on a table, as far as a load needs to know.

    ``referenced_keys``: the table's columns referenced by foreign keys that
    the database enforces (deleting a referenced row fails or cascades).
    ``can_truncate``: TRUNCATE is allowed (privilege) and transactional.
    """

    items: list[Dependent] = dataclasses.field(default_factory=list)
    referenced_keys: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    can_truncate: bool = False

    @property
    def block_swap(self) -> list[Dependent]:
        """The dependents a rename swap would break or lose."""
        return [d for d in self.items if d.blocks_swap]


class SqlConnection(ABC):
    """A connection to one SQL database, with the vendor's SQL spelled out."""

    vendor: ClassVar[str]
    quote_char: ClassVar[str] = '"'
    identifier_limit: ClassVar[int | None] = None
    limit_in_bytes: ClassVar[bool] = False
    param_style: ClassVar[ParamStyle] = "qmark"
    backslash_escapes: ClassVar[bool] = False
    names_ignore_case: ClassVar[bool] = False
    supports_on_conflict: ClassVar[bool] = True
    #: Whether the database enforces primary keys and unique constraints (Redshift does not).
    enforces_unique: ClassVar[bool] = True

    def __init__(self, spec: ConnectionSpec, raw: Any) -> None:
        self.spec = spec
        self.raw = raw
        self._closed = False

    @classmethod
    @abstractmethod
    def open(cls, spec: ConnectionSpec) -> SqlConnection:
        """Connect (ConnectionFailed, scrubbed, when the database cannot be reached)."""

    def scrub(self, text: str) -> str:
        """``text`` without this connection's secrets."""
        return scrub_message(self.spec, text)

    # -- identifiers ------------------------------------------------------
    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier: any character but NUL is taken literally."""
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def table_sql(self, table: TableName) -> str:
        """The quoted, possibly schema-qualified table name."""
        if table.schema is None:
            return self.quote(table.name)
        return f"{self.quote(table.schema)}.{self.quote(table.name)}"

    def check_table(self, table: TableName) -> None:
        """``ValueError`` when the vendor cannot hold this table name as written."""
        for part in (table.schema, table.name):
            if part is None:
                continue
            check_identifier(part)
            limit = self.identifier_limit
            size = len(part.encode("utf-8")) if self.limit_in_bytes else len(part)
            if limit is not None and size > limit:
                unit = "bytes" if self.limit_in_bytes else "characters"
                raise ValueError(
                    f"'{part}' is {size} {unit} long; {self.vendor} keeps at most {limit} "
                    "(a longer name would silently refer to another table)"
                )

    def work_table(self, table: TableName, purpose: str, run_id: str) -> TableName:
        """The run's work table beside ``table`` (``<table>__fp_<purpose>_<run>``)."""
        limit = self.identifier_limit or 255
        return table.sibling(
            work_table_name(table.name, purpose, run_id, limit=limit, in_bytes=self.limit_in_bytes)
        )

    def same_name(self, a: str, b: str) -> bool:
        """Whether two column names denote the same column for this vendor."""
        return a.lower() == b.lower() if self.names_ignore_case else a == b

    # -- types ------------------------------------------------------------
    @abstractmethod
    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """A declared type in this vendor's spelling (``key``: the column is in a unique key)."""

    @abstractmethod
    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """The column type for values of ``arrow_type``."""

    def column_sql(self, field: pa.Field[Any], *, key: bool = False) -> str:
        """The column type for ``field``: its declared SQL type when present, else from its Arrow type."""
        declared = declared_type(field)
        if declared is not None:
            return self.declared_sql(declared, key=key)
        arrow_type = field.type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if isinstance(arrow_type, pa.BaseExtensionType):
            arrow_type = arrow_type.storage_type
        return self.arrow_sql(arrow_type, key=key)

    def create_table_sql(
        self,
        table: TableName,
        columns: Sequence[tuple[str, str]],
        *,
        unique: Sequence[str] = (),
        temporary: bool = False,
        constraints: TableConstraints | None = None,
    ) -> str:
        """``CREATE TABLE`` with these (name, type) columns, an optional unique key and constraints.

        ``constraints`` adds NOT NULL and DEFAULT to its columns, and the
        primary key and unique constraints as table constraints.
        """
        not_null = set(constraints.not_null) if constraints is not None else set()
        defaults = constraints.defaults if constraints is not None else {}
        parts = []
        for name, sql_type in columns:
            part = f"{self.quote(name)} {sql_type}"
            if name in defaults:
                part += f" DEFAULT {self.default_sql(defaults[name])}"
            if name in not_null:
                part += " NOT NULL"
            parts.append(part)
        for key in constraints.keys if constraints is not None else []:
            named = f"CONSTRAINT {self.quote(key.name)} " if key.name else ""
            parts.append(f"{named}{key.kind} ({', '.join(self.quote(c) for c in key.columns)})")
        if unique:
            parts.append(f"UNIQUE ({', '.join(self.quote(k) for k in unique)})")
        kind = "TEMPORARY TABLE" if temporary else "TABLE"
        return f"CREATE {kind} {self.table_sql(table)} ({', '.join(parts)}){self.table_options()}"

    def string_literal(self, text: str) -> str:
        """``text`` as a SQL string literal (for DDL, where parameters cannot go)."""
        quoted = text.replace("'", "''")
        if self.backslash_escapes:
            quoted = quoted.replace("\\", "\\\\")
        return f"'{quoted}'"

    def default_sql(self, default: DefaultValue) -> str:
        """A literal column default in this vendor's spelling."""
        if default.kind == "text":
            return self.string_literal(default.value)
        if default.kind == "number":
            return default.value
        if default.kind == "keyword" and default.value in ("CURRENT_TIMESTAMP", "CURRENT_DATE"):
            # Expression defaults need parentheses on MariaDB and SQLite; PostgreSQL and DuckDB take them too.
            return f"({default.value})"
        return default.value  # NULL, TRUE, FALSE

    def table_options(self) -> str:
        """Text after the column list of CREATE TABLE."""
        return ""

    # -- statements -------------------------------------------------------
    def param(self, position: int) -> str:
        """The placeholder of the ``position``-th (1-based) parameter."""
        if self.param_style == "dollar":
            return f"${position}"
        # Drivers with %s placeholders give % a meaning whenever parameters are passed,
        # and a quoted identifier may hold a %: statements carry a NUL (which no
        # identifier can contain) that _format_style turns into %s after escaping.
        return _FORMAT_TOKEN if self.param_style == "format" else "?"

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a (small) query and return its rows."""

    def begin(self) -> None:
        """Start a transaction."""
        self.execute("BEGIN")

    @abstractmethod
    def commit(self) -> None:
        """Commit the current transaction."""

    @abstractmethod
    def rollback(self) -> None:
        """Roll the current transaction back (no error when there is none)."""

    def close(self) -> None:
        """Close the connection (twice is harmless)."""
        if self._closed:
            return
        self._closed = True
        self.raw.close()

    # -- catalog ----------------------------------------------------------
    @abstractmethod
    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """``table`` with its schema filled in, and whether it exists as a table."""

    @abstractmethod
    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """The (name, SQL type) columns of an existing table, in order."""

    @abstractmethod
    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """The column sets of the table's unique constraints and indexes."""

    @abstractmethod
    def constraints(self, table: TableName) -> TableConstraints:
        """The NOT NULL columns, primary key and unique keys an existing table enforces."""

    @abstractmethod
    def dependents(self, table: TableName) -> Dependents:
        """What depends on an existing table (views, foreign keys, triggers, grants...)."""

    def has_unique_key(self, table: TableName, keys: Sequence[str]) -> bool:
        """Whether a unique constraint or index covers exactly ``keys``."""
        wanted = frozenset(k.lower() if self.names_ignore_case else k for k in keys)
        for found in self.unique_keys(table):
            names = frozenset(k.lower() if self.names_ignore_case else k for k in found)
            if names == wanted:
                return True
        return False

    # -- reading ----------------------------------------------------------
    @abstractmethod
    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """The result of ``query`` (``:name`` parameters bound by the driver) in batches.

        Batches may be larger or smaller than ``batch_size``; callers re-slice.
        ``declared`` maps column names to their declared SQL types where the
        driver does not say (SQLite).
        """


# ---------------------------------------------------------------------------
# PostgreSQL family
# ---------------------------------------------------------------------------


def _pg_declared(declared: DeclaredType) -> str:
    kind = declared.kind
    if kind == "varchar":
        return f"character varying({declared.length})"
    if kind == "char":
        return f"character({declared.length})"
    if kind == "double":
        return "double precision"
    if kind == "numeric":
        if declared.precision is None:
            return "numeric"
        return f"numeric({declared.precision},{declared.scale or 0})"
    if kind in ("timestamp", "timestamptz"):
        precision = f"({declared.precision})" if declared.precision is not None else ""
        zone = "with" if kind == "timestamptz" else "without"
        return f"timestamp{precision} {zone} time zone"
    return kind  # text, smallint, integer, bigint, real, boolean, date, json, jsonb


def _pg_arrow(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz is not None else "timestamp without time zone"
    if pa.types.is_time(t):
        return "time without time zone"
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return "interval"
    if pa.types.is_nested(t):
        return "jsonb"
    return "text"


class _PostgresFamily(SqlConnection):
    identifier_limit = 63
    limit_in_bytes = True

    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """PostgreSQL spells every declared type natively."""
        return _pg_declared(declared)

    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """The PostgreSQL column type for an Arrow type."""
        return _pg_arrow(arrow_type)


_ADBC_NO_COPY = {"adbc.postgresql.use_copy": "false"}


def _pg_numeric_typmod(metadata: Mapping[bytes, bytes] | None) -> tuple[int, int] | None:
    raw = (metadata or {}).get(b"POSTGRESQL:typmod")
    if raw is None:
        return None
    try:
        typmod = int(raw)
    except ValueError:
        return None
    if typmod < 4:
        return None
    return ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF


def _from_adbc(batch: pa.RecordBatch) -> pa.RecordBatch:
    """An ADBC PostgreSQL batch as plain Arrow: numerics as decimals, extension types decoded.

    ADBC hands ``numeric`` over as text (it can exceed any Arrow decimal);
    constrained ones that fit become ``decimal128(p, s)``. The others stay
    text, with their SQL type in the field metadata so that a SQL
    destination creates a ``numeric`` column again.
    """
    arrays: list[Any] = []
    fields: list[pa.Field[Any]] = []
    for f, column in zip(batch.schema, batch.columns, strict=True):
        metadata: dict[bytes, bytes] | None = None
        if getattr(f.type, "type_name", None) == "numeric":
            text = cast(Any, column).storage
            typmod = _pg_numeric_typmod(f.metadata)
            column = text
            if typmod is not None and 1 <= typmod[0] <= 38:
                try:
                    column = text.cast(pa.decimal128(typmod[0], typmod[1]))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    column = text  # NaN or infinity: keep the exact text
            if pa.types.is_string(column.type):
                declared = "numeric" if typmod is None else f"numeric({typmod[0]},{typmod[1]})"
                metadata = {SQL_TYPE_METADATA_KEY: declared.encode()}
        arrays.append(column)
        fields.append(pa.field(f.name, column.type, metadata=metadata))
    plain = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return decode_extensions(plain)


def _keys(rows: Sequence[Row]) -> list[KeyConstraint]:
    """(constraint name, is primary, column) rows, grouped in order, as key constraints."""
    grouped: dict[str, tuple[bool, list[str]]] = {}
    for name, primary, column in rows:
        grouped.setdefault(str(name), (bool(primary), []))[1].append(str(column))
    return [
        KeyConstraint("PRIMARY KEY" if primary else "UNIQUE", tuple(columns), name)
        for name, (primary, columns) in grouped.items()
    ]


# One row (kind, name) per thing a drop-and-rename swap of the table $1 would break or lose.
_PG_DEPENDENTS = """
WITH t AS (SELECT to_regclass($1) AS oid)
SELECT 'view', v.oid::regclass::text FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid JOIN pg_catalog.pg_class v ON v.oid = r.ev_class, t
  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
  AND d.refobjid = t.oid AND r.ev_class <> t.oid
UNION SELECT 'rule', r.rulename::text FROM pg_catalog.pg_rewrite r, t WHERE r.ev_class = t.oid
UNION SELECT 'foreign key', c.conname || ' of ' || c.conrelid::regclass::text
  FROM pg_catalog.pg_constraint c, t
  WHERE c.contype = 'f' AND (c.confrelid = t.oid OR c.conrelid = t.oid)
UNION SELECT 'trigger', g.tgname::text FROM pg_catalog.pg_trigger g, t
  WHERE g.tgrelid = t.oid AND NOT g.tgisinternal
UNION SELECT 'grants', '' FROM pg_catalog.pg_class c, t WHERE c.oid = t.oid AND c.relacl IS NOT NULL
UNION SELECT 'owner', pg_catalog.pg_get_userbyid(c.relowner)::text FROM pg_catalog.pg_class c, t
  WHERE c.oid = t.oid AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
UNION SELECT 'row security', '' FROM pg_catalog.pg_class c, t WHERE c.oid = t.oid
  AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = t.oid))
UNION SELECT 'comment', '' FROM t WHERE pg_catalog.obj_description(t.oid, 'pg_class') IS NOT NULL
UNION SELECT 'partitions', '' FROM pg_catalog.pg_class c, t WHERE c.oid = t.oid AND c.relkind = 'p'
UNION SELECT 'inheritance', i.inhrelid::regclass::text || ' of ' || i.inhparent::regclass::text
  FROM pg_catalog.pg_inherits i, t WHERE i.inhparent = t.oid OR i.inhrelid = t.oid
UNION SELECT 'publication', p.pubname::text FROM pg_catalog.pg_publication_rel pr
  JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid, t WHERE pr.prrelid = t.oid
UNION SELECT 'sequence', s.oid::regclass::text FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_class s ON s.oid = d.objid, t
  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t.oid AND d.deptype = 'a'
  AND s.relkind = 'S'
UNION SELECT 'object', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_catalog.pg_depend d, t
  WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t.oid AND d.deptype = 'n'
  AND d.classid NOT IN ('pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_constraint'::regclass)
  AND NOT (d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = t.oid)
ORDER BY 1, 2
"""


class PostgresConnection(_PostgresFamily):
    """PostgreSQL through ADBC: binary COPY in and out, Arrow end to end.

    The connection is never in autocommit: every statement runs in the
    current transaction until :meth:`commit` or :meth:`rollback`.
    """

    vendor = "postgresql"
    param_style = "dollar"

    @classmethod
    def open(cls, spec: ConnectionSpec) -> PostgresConnection:
        """Connect with ADBC and use UTC for time zone conversions."""
        connection = cls(spec, connect_adbc(spec))
        try:
            # Naive timestamps are UTC everywhere in Flowport; casts between
            # timestamp and timestamptz must not depend on the server's zone.
            connection.execute("SET TIME ZONE 'UTC'")
            connection.commit()
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _bound(params: Sequence[Any]) -> Any:
        """Parameters as one Arrow row: a NULL needs a type, and text is what the SQL casts from."""
        if not params:
            return None
        arrays = [pa.array([v], pa.string() if v is None else None) for v in params]
        return pa.record_batch(arrays, names=[f"p{i}" for i in range(len(arrays))])

    def _cursor(self, *, copy: bool = False) -> Any:
        cursor = self.raw.cursor()
        if not copy:
            # ADBC wraps queries in COPY to read them fast; DDL, FETCH and
            # PREPARE cannot be wrapped.
            cursor.adbc_statement.set_options(**_ADBC_NO_COPY)
        return cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement in the current transaction."""
        cursor = self._cursor()
        try:
            cursor.execute(sql, self._bound(params))
        finally:
            cursor.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        cursor = self._cursor()
        try:
            cursor.execute(sql, self._bound(params))
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def begin(self) -> None:
        """ADBC keeps a transaction open whenever autocommit is off."""

    def commit(self) -> None:
        """Commit (ADBC opens the next transaction at once)."""
        self.raw.commit()

    def rollback(self) -> None:
        """Roll back."""
        self.raw.rollback()

    def ingest(self, table: TableName, data: pa.Table, *, create: bool, temporary: bool = False) -> None:
        """Bulk-load ``data`` with binary COPY (``create``: make the table from the Arrow schema)."""
        cursor = self.raw.cursor()
        try:
            cursor.adbc_ingest(
                table.name,
                data,
                mode="create_append" if create else "append",
                db_schema_name=None if temporary else table.schema,
                temporary=temporary,
            )
        finally:
            cursor.close()

    def ingest_stream(
        self, table: TableName, schema: pa.Schema, *, create: bool, temporary: bool = False
    ) -> IngestStream:
        """One binary COPY that batches are fed into as they come (see :class:`IngestStream`)."""
        return IngestStream(self, table, schema, create=create, temporary=temporary)

    def locate(self, table: TableName) -> tuple[TableName, bool]:
        """Resolve the schema through the search path like PostgreSQL does."""
        rows = self.query(
            "SELECT n.nspname, c.relkind FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            [self.table_sql(table)],
        )
        if rows:
            return TableName(table.name, str(rows[0][0])), str(rows[0][1]) in ("r", "p")
        if table.schema is not None:
            return table, False
        current = self.query("SELECT current_schema()")
        return TableName(table.name, str(current[0][0]) if current and current[0][0] else "public"), False

    def columns(self, table: TableName) -> list[tuple[str, str]]:
        """Column names and ``format_type`` texts, in order."""
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.table_sql(table)],
        )
        return [(str(name), str(sql_type)) for name, sql_type in rows]

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """Unique indexes over plain columns, without a predicate."""
        rows = self.query(
            "SELECT i.indexrelid::bigint, a.attname FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL "
            "AND i.indexprs IS NULL",
            [self.table_sql(table)],
        )
        found: dict[Any, set[str]] = {}
        for index, column in rows:
            found.setdefault(index, set()).add(str(column))
        return [frozenset(columns) for columns in found.values()]

    def constraints(self, table: TableName) -> TableConstraints:
        """NOT NULL columns (``attnotnull``) and unique indexes over plain columns, the primary key first."""
        regclass = self.table_sql(table)
        not_null = self.query(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
            "AND NOT attisdropped AND attnotnull ORDER BY attnum",
            [regclass],
        )
        rows = self.query(
            "SELECT c.relname, i.indisprimary, a.attname FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL "
            "AND i.indexprs IS NULL AND k.n <= i.indnkeyatts "
            "ORDER BY i.indisprimary DESC, c.relname, k.n",
            [regclass],
        )
        return TableConstraints(not_null=[str(r[0]) for r in not_null], keys=_keys(rows))

    def dependents(self, table: TableName) -> Dependents:
        """Views, rules, foreign keys (either way), triggers, grants, another owner, row security, a
        comment, partitions, inheritance, publications and serial sequences: all lost or broken by
        dropping the table and renaming another in its place (``LIKE ... INCLUDING ALL`` copies none).
        """
        regclass = self.table_sql(table)
        rows = self.query(_PG_DEPENDENTS, [regclass])
        referenced = self.query(
            "SELECT c.oid::bigint, a.attname FROM pg_catalog.pg_constraint c "
            "CROSS JOIN LATERAL unnest(c.confkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum "
            "WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) ORDER BY c.oid, k.n",
            [regclass],
        )
        truncate = self.query("SELECT has_table_privilege(to_regclass($1), 'TRUNCATE')", [regclass])
        keys: dict[Any, list[str]] = {}
        for constraint, column in referenced:
            keys.setdefault(constraint, []).append(str(column))
        return Dependents(
            items=[Dependent(str(kind), str(name or "")) for kind, name in rows],
            referenced_keys=list(dict.fromkeys(tuple(k) for k in keys.values())),
            # TRUNCATE is transactional in PostgreSQL, but refused on a table a foreign key references.
            can_truncate=bool(truncate and truncate[0][0]) and not keys,
        )

    def _parameter_types(self, sql: str) -> list[str]:
        """The types PostgreSQL infers for ``$n`` in ``sql`` (PREPARE, then ask the catalog)."""
        self.execute(f"PREPARE fp_parameter_types AS {sql}")
        try:
            rows = self.query(
                "SELECT parameter_types::text[] FROM pg_catalog.pg_prepared_statements "
                "WHERE name = 'fp_parameter_types'"
            )
        finally:
            self.execute("DEALLOCATE fp_parameter_types")
        types = rows[0][0] if rows else None
        return [str(t) for t in (types or [])]

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Without parameters: ADBC's COPY stream. With parameters: a server-side cursor.

        ADBC binds a Python string as ``text``, which PostgreSQL will not
        compare with a date or a number. So the statement is prepared first
        to learn the type PostgreSQL infers for each parameter, and every
        value is sent as text inside ``CAST($n AS <that type>)``: the same
        result as a literal of that type, without pasting any value.
        """
        if not parameters:
            cursor = self._cursor(copy=True)
            finished = False
            try:
                cursor.execute(query)
                reader = cursor.fetch_record_batch()
                for batch in reader:
                    yield _from_adbc(batch)
                finished = True
            finally:
                if not finished:
                    # Stopped early (preview, cancel): without a cancel the server would
                    # stream the rest of the result before the connection is usable again.
                    with contextlib.suppress(Exception):
                        cursor.adbc_cancel()
                cursor.close()
            return
        plain, values = bind_named(query, parameters, "dollar")
        types = self._parameter_types(plain)
        typed, _ = bind_named(
            query,
            parameters,
            "dollar",
            render=lambda position: (
                f"CAST(${position} AS {types[position - 1]})" if position <= len(types) else f"${position}"
            ),
        )
        self.execute(f"DECLARE fp_read NO SCROLL CURSOR FOR {typed}", [_param_text(v) for v in values])
        cursor = self._cursor()
        try:
            while True:
                cursor.execute(f"FETCH FORWARD {int(batch_size)} FROM fp_read")
                table = cursor.fetch_arrow_table()
                for batch in table.to_batches():
                    yield _from_adbc(batch)
                if table.num_rows < batch_size:
                    cursor.execute("CLOSE fp_read")
                    return
        finally:
            cursor.close()


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


class RedshiftConnection(_PostgresFamily):
    """Redshift (PostgreSQL wire protocol) through psycopg.

    Redshift has no ``COPY FROM STDIN`` (only from S3), so loads are
    multi-row INSERTs of many rows each, and its unique constraints are
    informational, so upserts always use UPDATE + INSERT.
    """

    vendor = "redshift"
    param_style = "format"
    supports_on_conflict = False
    enforces_unique = False

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
            cursor.execute(*_format_style(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        with self.raw.cursor() as cursor:
            cursor.execute(*_format_style(sql, params))
            return [tuple(r) for r in cursor.fetchall()]

    def begin(self) -> None:
        """psycopg opens a transaction with the first statement."""

    def commit(self) -> None:
        """Commit."""
        self.raw.commit()

    def rollback(self) -> None:
        """Roll back."""
        self.raw.rollback()

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
        row_sql = "(" + ", ".join([_FORMAT_TOKEN] * width) + ")"
        with self.raw.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                params = [value for row in chunk for value in row]
                cursor.execute(*_format_style(head + ", ".join([row_sql] * len(chunk)), params))

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


# ---------------------------------------------------------------------------
# MariaDB / MySQL
# ---------------------------------------------------------------------------

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
    quote_char = "`"
    identifier_limit = 64
    param_style = "format"
    backslash_escapes = True
    names_ignore_case = True

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
            cursor.execute(*_format_style(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        with self.raw.cursor() as cursor:
            cursor.execute(*_format_style(sql, params))
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
        return TableConstraints(not_null=[str(r[0]) for r in not_null], keys=_keys(rows))

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


# ---------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------


class SqliteConnection(SqlConnection):
    """SQLite through the standard library, in autocommit mode with explicit transactions."""

    vendor = "sqlite"
    names_ignore_case = True

    @classmethod
    def open(cls, spec: ConnectionSpec) -> SqliteConnection:
        """Open the database file; wait up to 30 s for another writer."""
        raw = connect_dbapi(spec, autocommit=True, any_thread=True)
        raw.execute("PRAGMA busy_timeout = 30000")
        return cls(spec, raw)

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


# ---------------------------------------------------------------------------
# DuckDB
# ---------------------------------------------------------------------------


class DuckDbConnection(SqlConnection):
    """A DuckDB database file: Arrow in and out without conversion."""

    vendor = "duckdb"
    names_ignore_case = True

    @classmethod
    def open(cls, spec: ConnectionSpec) -> DuckDbConnection:
        """Open the database file in UTC, its SQL confined to that file."""
        raw = connect_dbapi(spec)  # sandboxed and in UTC already
        return cls(spec, raw)

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


_CONNECTIONS: dict[str, type[SqlConnection]] = {
    "postgresql": PostgresConnection,
    "redshift": RedshiftConnection,
    "mysql": MariaDbConnection,
    "sqlite": SqliteConnection,
    "duckdb": DuckDbConnection,
}


def open_connection(spec: ConnectionSpec) -> SqlConnection:
    """Connect to a SQL database with its vendor's class."""
    cls = _CONNECTIONS.get(spec.vendor)
    if cls is None:
        raise ValidationFailed(
            f"Connection '{spec.name}' is a {spec.vendor} connection, not a SQL database "
            f"({', '.join(sorted(_CONNECTIONS))})"
        )
    return cls.open(spec)


class IngestStream(FedStream):
    """A single binary ``COPY`` fed batch by batch from another thread.

    ADBC sets up every ``adbc_ingest`` call anew (catalog look-ups, COPY
    start), which costs far more than the data for batches of a few hundred
    thousand rows; a stream pays that once per load and overlaps with the
    stages producing the batches. The connection belongs to the stream's
    thread until :meth:`finish` or :meth:`cancel` returns.
    """

    def __init__(
        self, conn: PostgresConnection, table: TableName, schema: pa.Schema, *, create: bool, temporary: bool
    ) -> None:
        def consume(reader: pa.RecordBatchReader) -> None:
            cursor = conn.raw.cursor()
            try:
                cursor.adbc_ingest(
                    table.name,
                    reader,
                    mode="create_append" if create else "append",
                    db_schema_name=None if temporary else table.schema,
                    temporary=temporary,
                )
            finally:
                cursor.close()

        super().__init__(schema, consume, name="flowport-pg-copy")
