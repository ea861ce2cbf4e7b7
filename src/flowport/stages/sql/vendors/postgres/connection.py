"""PostgreSQL: the connection (ADBC, binary COPY in and out) and its catalog look-ups."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any, cast

import pyarrow as pa

from flowport.connections.drivers import connect_adbc
from flowport.connections.spec import ConnectionSpec
from flowport.stages._stream import FedStream
from flowport.stages.sql._connection import (
    Capabilities,
    Dependent,
    Dependents,
    Row,
    SqlConnection,
    key_constraints,
    param_text,
)
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._params import bind_named
from flowport.stages.sql._types import DeclaredType, TableConstraints, decode_extensions
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY

__all__ = ["IngestStream", "PostgresConnection"]


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


_ADBC_NO_COPY = {"adbc.postgresql.use_copy": "false"}


def _flat_array(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.Array[Any]:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


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


class PostgresConnection(SqlConnection):
    """PostgreSQL through ADBC: binary COPY in and out, Arrow end to end.

    The connection is never in autocommit: every statement runs in the
    current transaction until :meth:`commit` or :meth:`rollback`.
    """

    vendor = "postgresql"
    capabilities = Capabilities(
        bulk_path="binary COPY",
        upsert="on conflict",
        replace_by_rename=True,
        transactional_truncate=True,
        identifier_limit=63,
        limit_in_bytes=True,
        param_style="dollar",
    )

    def declared_sql(self, declared: DeclaredType, *, key: bool = False) -> str:
        """PostgreSQL spells every declared type natively."""
        return _pg_declared(declared)

    def arrow_sql(self, arrow_type: pa.DataType, *, key: bool = False) -> str:
        """The PostgreSQL column type for an Arrow type."""
        return _pg_arrow(arrow_type)

    #: A streaming job's micro-batches reuse a connection (ADBC reads the type catalog on connect).
    reusable = True
    finds_present_keys = True

    @classmethod
    def open_for_load(cls, spec: ConnectionSpec, mode: str) -> SqlConnection:
        """A ``replace`` whose load encodes its own COPY starts on psycopg (a
        :class:`~.copy_session.CopySession`): ADBC is connected only if the load needs it (see
        :meth:`~.load.PostgresLoad.prepare`), which saves its import and its connect, about
        80 ms of the run's start."""
        if mode == "replace" and getattr(cls.load, "encodes_copy", False):
            from flowport.stages.sql.vendors.postgres.copy_session import CopySession

            return CopySession.open(spec)
        return cls.open(spec)

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

    def present_keys(self, table: TableName, columns: Sequence[tuple[str, str]], keys: pa.Table) -> pa.Table:
        """One query: the key tuples, sent as arrays (one parameter per column), that ``table``
        holds. Each value is cast to its column's type, so the key's index finds it."""
        offsets = pa.array([0, keys.num_rows], pa.int32())
        lists = [pa.ListArray.from_arrays(offsets, _flat_array(column)) for column in keys.columns]
        names = [f"c{i}" for i in range(len(columns))]
        match = " AND ".join(
            f"t.{self.quote(name)} = CAST(u.{n} AS {sql_type})"
            for n, (name, sql_type) in zip(names, columns, strict=True)
        )
        cursor = self._cursor()
        try:
            cursor.execute(
                f"SELECT {', '.join(f'u.{n}' for n in names)} "
                f"FROM unnest({', '.join(f'${i + 1}' for i in range(len(names)))}) AS u({', '.join(names)}) "
                f"WHERE EXISTS (SELECT 1 FROM {self.table_sql(table)} AS t WHERE {match})",
                pa.record_batch(lists, names=[f"p{i}" for i in range(len(lists))]),
            )
            found: pa.Table = cursor.fetch_arrow_table()
        finally:
            cursor.close()
        if not found.num_rows:
            return found
        return pa.Table.from_batches([_from_adbc(b) for b in found.to_batches() if b.num_rows])

    def begin(self) -> None:
        """ADBC keeps a transaction open whenever autocommit is off."""

    #: What ``DISCARD ALL`` does, one statement at a time: ADBC always has a transaction open, and
    #: DISCARD ALL refuses to run in one. Then the time zone a new connection sets.
    _RESET = (
        "CLOSE ALL",
        "SET SESSION AUTHORIZATION DEFAULT",
        "RESET ALL",
        "DEALLOCATE ALL",
        "UNLISTEN *",
        "SELECT pg_advisory_unlock_all()",
        "DISCARD PLANS",
        "DISCARD TEMP",
        "DISCARD SEQUENCES",
        "SET TIME ZONE 'UTC'",
    )

    def reset(self) -> None:
        """Roll back, then leave nothing of the session behind (see :data:`_RESET`)."""
        self.rollback()
        for statement in self._RESET:
            self.execute(statement)
        self.commit()

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
        return TableConstraints(not_null=[str(r[0]) for r in not_null], keys=key_constraints(rows))

    def copies_like_insert(self, table: TableName, columns: Sequence[str]) -> bool:
        """Whether ``COPY table (columns) FROM STDIN`` stores exactly what ``INSERT`` would: not when
        the table has row-level security (COPY FROM refuses it), an INSERT rule (COPY ignores rules),
        or loads an identity column GENERATED ALWAYS (COPY writes the given values, as if OVERRIDING
        SYSTEM VALUE)."""
        rows = self.query(
            "SELECT c.relrowsecurity "
            "OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type = '3') "
            "OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.attidentity = 'a' "
            "AND a.attname IN (SELECT json_array_elements_text(CAST($2 AS json)))) "
            "FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)",
            [self.table_sql(table), json.dumps(list(columns))],
        )
        return bool(rows) and rows[0][0] is False

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
        self.execute(f"DECLARE fp_read NO SCROLL CURSOR FOR {typed}", [param_text(v) for v in values])
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
