"""PostgreSQL table loads: staging table, binary COPY, and the publish in the load's one transaction."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from flowport.errors import StageError
from flowport.stages._duckdb import DuckSession, nested_to_json
from flowport.stages._stream import FedWriter
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import RENAME_SWAP, TableLoad, log
from flowport.stages.sql.vendors.postgres.binary_copy import encodable, tuple_order
from flowport.stages.sql.vendors.postgres.connection import PostgresConnection
from flowport.stages.sql.vendors.postgres.copy_session import CopySession, ParallelCopy, SessionAhead

__all__ = [
    "AUTO_SECOND_STREAM_ROWS",
    "COPY_TABLE_MARK",
    "PostgresLoad",
    "copy_lock_key",
    "rename_dependents",
    "sweep_copy_tables",
]

#: ``copy_streams`` left to Flowport: a replace's load gets a second COPY stream once it sent this
#: many rows (a smaller load keeps one stream and one connection).
AUTO_SECOND_STREAM_ROWS = 500_000


_PG_BINARY: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "json": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
}


def _pg_binary_type(sql_type: str) -> pa.DataType | None:
    """The Arrow type whose binary COPY form a PostgreSQL column of ``sql_type`` accepts, if any."""
    text = sql_type.lower()
    if text in _PG_BINARY:
        return _PG_BINARY[text]
    if text.startswith(("character varying", "character(")) or text == "character":
        return pa.string()
    if text.startswith("timestamp"):
        return pa.timestamp("us", "UTC" if "with time zone" in text else None)
    if text.startswith("numeric"):
        return pa.decimal128(38, 0)  # any decimal: the server rescales to the column's typmod
    return None


def _binary_cast(source: pa.DataType, target: pa.DataType) -> pa.DataType | None:
    """The type to cast ``source`` values to for a binary COPY into ``target`` (None: not a plain cast)."""
    if pa.types.is_integer(target):
        return target if pa.types.is_integer(source) else None
    if pa.types.is_floating(target):
        return target if pa.types.is_integer(source) or pa.types.is_floating(source) else None
    if pa.types.is_decimal(target):
        if pa.types.is_decimal(source):
            return source
        return pa.decimal128(20, 0) if pa.types.is_integer(source) else None
    if pa.types.is_boolean(target):
        return target if pa.types.is_boolean(source) else None
    if pa.types.is_string(target):
        return target if pa.types.is_string(source) else None
    if pa.types.is_binary(target):
        return target if pa.types.is_binary(source) or pa.types.is_fixed_size_binary(source) else None
    if pa.types.is_date(target):
        return target if pa.types.is_date(source) else None
    if pa.types.is_timestamp(target):
        return target if pa.types.is_timestamp(source) else None
    return None


def _encoded_type(source: pa.DataType, binary: pa.DataType) -> pa.DataType | None:
    """The type Flowport's own encoder sends a column cast to ``binary`` as (None: it cannot)."""
    if pa.types.is_decimal(binary) and pa.types.is_integer(source):
        # Integers into numeric: up to 32 bits fit ten digits; wider ones stay with the driver.
        return pa.decimal128(10, 0) if source.bit_width <= 32 else None
    return binary if encodable(binary) else None


def _pg_loose(data: pa.Table, session: DuckSession) -> pa.Table:
    """``data`` with types every PostgreSQL loader takes (the staging table casts to the real types)."""
    data = nested_to_json(session, data)
    for index, f in enumerate(data.schema):
        t = f.type
        target: pa.DataType | None = None
        if pa.types.is_int8(t) or pa.types.is_uint8(t):
            target = pa.int16()
        elif pa.types.is_uint16(t):
            target = pa.int32()
        elif pa.types.is_uint32(t):
            target = pa.int64()
        elif pa.types.is_uint64(t):
            target = pa.decimal128(20, 0)
        elif pa.types.is_float16(t):
            target = pa.float32()
        elif pa.types.is_date64(t):
            target = pa.date32()
        elif pa.types.is_time32(t):
            target = pa.time64("us")
        elif pa.types.is_timestamp(t) and t.unit == "ns":
            target = pa.timestamp("us", t.tz)
        elif pa.types.is_null(t) or pa.types.is_decimal256(t):
            target = pa.string()
        elif pa.types.is_fixed_size_binary(t):
            target = pa.binary()
        if target is not None:
            # Nanoseconds are cut to microseconds, PostgreSQL's precision.
            column = pc.cast(data.column(index), target, safe=not pa.types.is_timestamp(t))
            data = data.set_column(index, pa.field(f.name, target), column)
    return data


class PostgresLoad(TableLoad):
    """PostgreSQL (and Redshift, its subclass): the whole load is one transaction.

    PostgreSQL DDL is transactional, so the staging table, the load and the
    swap happen in the transaction the connection holds from ``open``:
    readers see the old target until COMMIT, and a failed or killed run
    leaves nothing behind (the server rolls it back). A ``replace`` by rename
    swap with ``copy_streams`` above 1 or left empty (a second stream joins a
    large load) commits its staging table first, so the other sessions see
    it: a failed run drops it, one killed outright leaves it (marked, see
    :func:`sweep_copy_tables`) for the next such load to drop; the swap is
    one transaction either way. ``replace`` fills a
    staging table shaped like the target, then DROPs the target and RENAMEs
    the staging table in its place; when something depends on the target
    (views, foreign keys, grants, triggers...) the staging table is a
    temporary one and its rows replace the target's in place (TRUNCATE, or
    DELETE, or a merge on the key a foreign key references). ``append`` and
    ``upsert`` load a temporary table and INSERT from it.
    """

    conn: PostgresConnection
    #: What ``CREATE TABLE ... (LIKE target ...)`` copies into a replacement staging table.
    like_clause: ClassVar[str] = "INCLUDING ALL"
    #: Whether a ``replace`` by rename swap may move onto a :class:`CopySession` (Flowport's encoder).
    encodes_copy: ClassVar[bool] = True

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self._duck: DuckSession | None = None
        self.stage_table: TableName | None = None  # the typed staging table (replace)
        self.stage_temporary = False  # a temporary staging table, for a replace in place
        self.raw_table: TableName | None = None  # the temporary table batches land in
        self.binary_types: dict[str, pa.DataType] | None = None
        self._raw_created = False
        self._stream: FedWriter | ParallelCopy | None = None
        #: The connection the destination opened (and closes): ADBC, or for a replace that encodes
        #: its own COPY a psycopg session (see PostgresConnection.open_for_load). Any other the load
        #: moves onto is its own to close.
        self._home: PostgresConnection = self.conn
        #: Sessions of the extra COPY streams (``copy_streams`` > 1), and whether the staging table
        #: was committed for them (then an abort drops it: a rollback no longer can).
        self._others: list[CopySession] = []
        self._stage_committed = False
        #: The psycopg session of a replace by rename, connecting while the load waits for its first batch.
        self._ahead: SessionAhead | None = None
        #: A second connection for the key look-ups of an append once its COPY stream owns ``conn``.
        self._lookup: PostgresConnection | None = None
        #: ``copy_streams`` left to Flowport (None): rows sent so far, and the session of the second
        #: stream, connecting once half of AUTO_SECOND_STREAM_ROWS were sent.
        self._auto = self.copy_streams is None
        self._fed = 0
        self._second: SessionAhead | None = None
        #: An append whose batches are COPYed straight into the target (see _copy_into_target).
        self._into_target = False

    def prepare(self) -> None:
        """Check the target; for a replace begun on ADBC, connect the psycopg session meanwhile (see
        SessionAhead). A replace in place loads over ADBC (connected now if the load began on psycopg)."""
        if self.mode == "replace" and self.encodes_copy and not isinstance(self.conn, CopySession):
            self._ahead = SessionAhead(self.conn.spec)
        try:
            super().prepare()
        except BaseException:
            self._discard_ahead()
            raise
        if self.in_place:
            self._discard_ahead()
            self._onto_adbc()

    def _onto_adbc(self) -> None:
        """Carry on over ADBC when the load began on a psycopg session (it has only read the catalog:
        its transaction is ended)."""
        if not isinstance(self.conn, CopySession):
            return
        adbc = PostgresConnection.open(self.conn.spec)
        self.conn.rollback()
        if self.conn is not self._home:
            self.conn.close()
        self.conn = adbc

    def _discard_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()

    def _discard_second(self) -> None:
        second, self._second = self._second, None
        if second is not None:
            second.discard()

    @property
    def duck(self) -> DuckSession:
        """A DuckDB session to render nested values as JSON."""
        if self._duck is None:
            self._duck = DuckSession(shared=True)
        return self._duck

    @contextmanager
    def _key_lookup(self) -> Iterator[PostgresConnection]:
        """The load's connection until its COPY stream starts; then a second one (the stream's thread
        owns the first: a query sent meanwhile would interleave with the COPY), whose transaction
        ends with each look-up (it holds no snapshot or lock while the load goes on)."""
        if self._stream is None:
            yield self.conn
            return
        if self._lookup is None:
            self._lookup = self._another_adbc()
        try:
            yield self._lookup
        finally:
            self._lookup.rollback()

    def _another_adbc(self) -> PostgresConnection:
        """A second ADBC connection: the destination's way (a streaming job's micro-batch takes a kept
        one, about 25 ms of connecting saved), else a new one."""
        if self.connect is None:
            return PostgresConnection.open(self.conn.spec)
        conn = self.connect()  # never a CopySession: only a load asks for one, and none is kept
        assert isinstance(conn, PostgresConnection)
        return conn

    def _create_stage(self) -> None:
        raw_name = self.conn.work_table(self.target, "load", self.run_id).name
        self.raw_table = TableName(raw_name)
        if self.mode == "replace":
            if self.in_place:
                # Only rows go from here into the target: a temporary table (no WAL, no indexes,
                # the TEMP privilege rather than CREATE on the schema) with the loaded columns typed
                # like the target's, and no constraints or defaults (a serial's sequence is used once).
                self.stage_table = TableName(self.conn.work_table(self.target, "stage", self.run_id).name)
                self.stage_temporary = True
                self.conn.execute(
                    f"CREATE TEMPORARY TABLE {self.conn.table_sql(self.stage_table)} AS "
                    f"SELECT {self._column_list()} FROM {self.conn.table_sql(self.target)} LIMIT 0"
                )
                stage_types = dict(self.target_columns)
            elif self._move_to_copy_session():
                return
            else:
                self.stage_table = self.conn.work_table(self.target, "stage", self.run_id)
                self._create_replacement(self.stage_table)
                stage_types = dict(self.conn.columns(self.stage_table))
            self.binary_types = self._binary_types(stage_types)
            self.types = {c: stage_types.get(c, self.types[c]) for c in self.columns}
        elif self.mode == "append" and self.exists and self._copy_into_target():
            return
        if self.binary_types is None:
            self._create_raw()

    def _copy_into_target(self) -> bool:
        """An append to an existing table COPYs straight into it, in the load's one transaction
        (nothing shows before COMMIT; an abort rolls it back), when every column has a binary form
        the table's column takes and COPY stores what INSERT would (see
        :meth:`PostgresConnection.copies_like_insert`); else batches land in a temporary raw table
        and one INSERT ... SELECT moves them at publish (the server writes every row twice)."""
        binary = self._binary_types(dict(self.target_columns))
        if binary is None or not self.conn.copies_like_insert(self.target, self.columns):
            return False
        self.stage_table = self.target
        self.binary_types = binary
        self._into_target = True
        log.debug("stage %s: COPY straight into %s", self.stage, self.target)
        return True

    def _move_to_copy_session(self) -> bool:
        """Carry on the load over psycopg with Flowport's vectorised binary COPY encoder, when every
        column has an encoding (the staging table is then created there); False: stay on ADBC.

        The move happens before the load writes anything: the ADBC connection has only read the
        catalog, and its transaction is ended so it holds nothing the swap could wait for.
        """
        if not self.encodes_copy:
            return False
        # ADBC when the load began there (the destination's), else None: it began on psycopg.
        adbc: PostgresConnection | None = None
        if isinstance(self.conn, CopySession):
            session = self.conn
        else:
            adbc = self.conn
            ahead, self._ahead = self._ahead, None
            try:
                session = ahead.take() if ahead is not None else CopySession.open(adbc.spec)
            except Exception as exc:  # the ADBC path still works: say why it is taken
                log.info("stage %s: loading with ADBC's COPY (%s)", self.stage, adbc.scrub(str(exc)))
                return False
            self.conn = session
        parallel = (self.copy_streams or 1) > 1
        # Parallel streams need a staging table the other sessions see, i.e. committed: it gets its
        # own purpose ("copy"), and an advisory lock held by this session marks it as in use. So does
        # the staging table of a load whose second stream may join later (copy_streams left empty).
        shared = parallel or self._auto
        try:
            stage_table = session.work_table(self.target, "copy" if shared else "stage", self.run_id)
            if shared:
                sweep_copy_tables(session, self.target)
                session.query("SELECT pg_advisory_lock($1, $2)", _copy_lock(session, stage_table))
            self._create_replacement(stage_table)
            if shared:
                # The mark the sweep looks for: a table of the user's that happens to have such a
                # name is never taken for a staging table.
                session.execute(f"COMMENT ON TABLE {session.table_sql(stage_table)} IS '{COPY_TABLE_MARK}'")
            stage_types = dict(session.columns(stage_table))
            binary = self._binary_types(stage_types)
            assert self.incoming is not None
            encoded = (
                {
                    c: _encoded_type(f.type, binary[c])
                    for f, c in zip(self.incoming, self.columns, strict=True)
                }
                if binary is not None
                else {}
            )
            if binary is None or any(t is None for t in encoded.values()):
                # A column without an encoding of Flowport's: ADBC's COPY loads it (connected now if
                # the load began on psycopg).
                session.rollback()
                if adbc is None:
                    adbc = PostgresConnection.open(session.spec)
                self.conn = adbc
                if session is not self._home:
                    session.close()
                return False
        except BaseException:
            if adbc is not None:
                self.conn = adbc
            if session is not self._home:
                session.close()
            raise
        if adbc is not None:
            adbc.rollback()
        self.stage_table = stage_table
        self.binary_types = {c: t for c, t in encoded.items() if t is not None}
        self.types = {c: stage_types.get(c, self.types[c]) for c in self.columns}
        if parallel:
            self._open_others()
        elif shared:
            self.conn.commit()
            self._stage_committed = True
        log.debug(
            "stage %s: binary COPY encoded by Flowport, sent with psycopg (%d stream(s))",
            self.stage,
            1 + len(self._others),
        )
        return True

    def _open_others(self) -> None:
        """Commit the staging table, then open the sessions of the other COPY streams (as many as
        the server accepts, up to ``copy_streams - 1``: a refused one leaves fewer streams)."""
        self.conn.commit()
        self._stage_committed = True
        spec = self.conn.spec
        for _ in range((self.copy_streams or 1) - 1):
            try:
                self._others.append(CopySession.open(spec))
            except Exception as exc:
                log.info(
                    "stage %s: %d COPY stream(s) instead of %d (%s)",
                    self.stage,
                    1 + len(self._others),
                    self.copy_streams,
                    self.conn.scrub(str(exc)),
                )
                break

    def _binary_types(self, stage_types: dict[str, str]) -> dict[str, pa.DataType] | None:
        """The Arrow type each column is cast to for a binary COPY straight into the staging table
        (None when a column has no binary form the staging column accepts)."""
        binary: dict[str, pa.DataType] = {}
        assert self.incoming is not None
        for f, column in zip(self.incoming, self.columns, strict=True):
            target = _pg_binary_type(stage_types.get(column, ""))
            cast_to = _binary_cast(f.type, target) if target is not None else None
            if cast_to is None:
                return None
            binary[column] = cast_to
        return binary

    def _create_raw(self) -> None:
        """Create the temporary table loose batches land in (here: the first COPY creates it)."""

    def _loose_field_type(self, column: str) -> pa.DataType:
        assert self.incoming is not None
        index = self.columns.index(column)
        t = self.incoming.field(index).type
        sample = _pg_loose(pa.table({"c": pa.array([], t)}), self.duck)
        loose: pa.DataType = sample.schema.field(0).type
        return loose

    def _create_replacement(self, table: TableName) -> None:
        if self.exists:
            self.conn.execute(
                f"CREATE TABLE {self.conn.table_sql(table)} "
                f"(LIKE {self.conn.table_sql(self.target)} {self.like_clause})"
            )
        else:
            self.conn.execute(self._create_target_sql(table))

    def _load(self, data: pa.Table) -> None:
        assert self.raw_table is not None
        if self.binary_types is not None:
            assert self.stage_table is not None
            columns = []
            for name in self.columns:
                column = data.column(name)
                target = self.binary_types[name]
                if column.type != target:
                    try:
                        column = pc.cast(column, target, safe=not pa.types.is_timestamp(target))
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise StageError(
                            self.stage, f"column '{name}' does not fit {self.types[name]}: {exc}"
                        ) from exc
                columns.append(column)
            data = pa.table(columns, names=self.columns)
            self._feed(self.stage_table, data, temporary=self.stage_temporary, create=False)
            return
        self._load_loose(_pg_loose(data, self.duck))

    def _load_loose(self, loose: pa.Table) -> None:
        """Load a batch of loose types into the temporary raw table (cast at publish)."""
        assert self.raw_table is not None
        self._feed(self.raw_table, loose, temporary=True, create=not self._raw_created)
        self._raw_created = True

    def _feed(self, table: TableName, data: pa.Table, *, temporary: bool, create: bool) -> None:
        """Send a batch into the load's single COPY stream (started by the first batch)."""
        if isinstance(self.conn, CopySession):
            # Fixed-width columns first: their fields encode as one block (the COPY lists them so).
            data = data.select(tuple_order(data.schema))
        if self._stream is None:
            if isinstance(self.conn, CopySession):
                self._stream = self.conn.copy_stream(
                    table,
                    data.column_names,
                    others=self._others,
                    growing=self._auto and self._stage_committed,
                )
            else:
                self._stream = self.conn.ingest_stream(table, data.schema, create=create, temporary=temporary)
        self._stream.put(data)
        if self._auto and isinstance(self._stream, ParallelCopy):
            self._fed += data.num_rows
            if self._second is None and self._fed >= AUTO_SECOND_STREAM_ROWS // 2:
                self._second = SessionAhead(self.conn.spec)
            if self._fed >= AUTO_SECOND_STREAM_ROWS:
                self._add_second_stream()

    def _add_second_stream(self) -> None:
        """A large load (``copy_streams`` left empty) gets a second COPY stream into its staging
        table (committed at the start for this), beside the first one, which goes on."""
        self._auto = False
        ahead, self._second = self._second, None
        stream = self._stream
        assert isinstance(stream, ParallelCopy) and ahead is not None
        try:
            other = ahead.take()
        except Exception as exc:  # one stream still loads everything
            log.info("stage %s: one COPY stream (%s)", self.stage, self.conn.scrub(str(exc)))
            return
        self._others.append(other)  # closed with the load
        stream.add(other)
        log.debug("stage %s: a second COPY stream after %d rows", self.stage, self._fed)

    def _end_stream(self, *, cancel: bool = False) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if cancel:
            stream.cancel()
        else:
            stream.finish()

    def _expression(self, column: str) -> str:
        return f"CAST({self._q(column)} AS {self.types[column]})"

    def _publish(self) -> None:
        self._end_stream()
        conn = self.conn
        target_sql = conn.table_sql(self.target)
        raw_sql = conn.table_sql(self.raw_table) if self.raw_table is not None else ""
        plan = self._plan(swap=not self.in_place) if self.mode == "replace" and self.exists else None
        if plan is not None and plan.strategy != RENAME_SWAP:
            source: str | None = None  # no record arrived: the target is emptied
            if self._raw_created:
                source = raw_sql
            elif self.stage_table is not None:
                source = conn.table_sql(self.stage_table)
            for statement in self._in_place_statements(target_sql, source, plan):
                conn.execute(statement)
            if self.stage_table is not None:
                conn.execute(f"DROP TABLE {conn.table_sql(self.stage_table)}")
                self.stage_table = None
        elif self.mode == "replace":
            if self.stage_table is None:  # no record arrived: the target is emptied
                self.stage_table = conn.work_table(self.target, "stage", self.run_id)
                self._create_replacement(self.stage_table)
            elif self._raw_created:
                conn.execute(self._insert(conn.table_sql(self.stage_table), raw_sql))
            conn.execute(f"DROP TABLE IF EXISTS {target_sql}")
            conn.execute(
                f"ALTER TABLE {conn.table_sql(self.stage_table)} RENAME TO {conn.quote(self.target.name)}"
            )
            self._rename_dependents(self.stage_table.name)
            if self._stage_committed:
                conn.execute(f"COMMENT ON TABLE {target_sql} IS NULL")  # the staging table's mark
        elif not self._into_target:  # an append COPYed into the target has nothing left to move
            created = False
            if not self.exists:
                conn.execute(self._create_target_sql(self.target))
                self.types = dict(conn.columns(self.target))
                created = True
            for statement in self._publish_statements(target_sql, raw_sql, created=created):
                conn.execute(statement)
        if self._raw_created:
            conn.execute(f"DROP TABLE IF EXISTS {raw_sql}")
        conn.commit()

    def _rename_dependents(self, stage_name: str) -> None:
        rename_dependents(self.conn, self.target, stage_name)

    def _discard(self) -> None:
        self._end_stream(cancel=True)
        self.conn.rollback()
        if self._stage_committed and self.stage_table is not None:
            # Committed for the other streams: a rollback does not take it away.
            self.conn.execute(f"DROP TABLE IF EXISTS {self.conn.table_sql(self.stage_table)}")
            self.conn.commit()
            self._stage_committed = False

    def _cleanup(self) -> None:
        self._discard_second()
        self._end_stream(cancel=True)
        if self._duck is not None:
            self._duck.close()
            self._duck = None
        self._close_session()

    def _close_session(self) -> None:
        """Close the key look-up connection, the other streams' sessions and the connection the
        load moved onto (the destination closes the one it opened)."""
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            lookup.close()
        others, self._others = self._others, []
        for other in others:
            other.close()
        if self.conn is not self._home:
            moved, self.conn = self.conn, self._home
            moved.close()

    def close(self) -> None:
        """Release the checks and the load's own sessions."""
        try:
            super().close()
        finally:
            self._discard_ahead()
            self._discard_second()
            if self.conn is not self._home:
                self._end_stream(cancel=True)
                self._close_session()


def rename_dependents(conn: SqlConnection, target: TableName, stage_name: str) -> None:
    """Give the indexes, constraints and sequences ``LIKE ... INCLUDING ALL`` named after a staging
    table that now is ``target`` their usual names (``orders_pkey``, not ``orders__fp_stage_..._pkey``).
    """
    table = conn.table_sql(target)
    schema = conn.quote(target.schema or "public")
    found = conn.query(
        "SELECT 'INDEX', c.relname FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass($1) "
        "UNION ALL SELECT 'CONSTRAINT', conname FROM pg_catalog.pg_constraint "
        "WHERE conrelid = to_regclass($1) AND contype IN ('c', 'f', 'n') "
        "UNION ALL SELECT 'SEQUENCE', s.relname FROM pg_catalog.pg_depend d "
        "JOIN pg_catalog.pg_class s ON s.oid = d.objid "
        "WHERE d.refobjid = to_regclass($1) AND s.relkind = 'S'",
        [table],
    )
    renamed: set[str] = set()
    for kind, name in found:
        name = str(name)
        if not name.startswith(stage_name) or name in renamed:
            continue
        new = target.name + name[len(stage_name) :]
        if len(new.encode("utf-8")) > 63:
            continue  # PostgreSQL would cut it: keep the working name rather than risk a clash
        renamed.add(name)
        if kind == "CONSTRAINT":
            conn.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {conn.quote(name)} TO {conn.quote(new)}")
        else:
            conn.execute(f"ALTER {kind} {schema}.{conn.quote(name)} RENAME TO {conn.quote(new)}")


# Advisory locks of parallel loads' staging tables: (this class, a hash of the table's name).
_COPY_LOCK_CLASS = 0x46500C0
#: The comment that marks a parallel load's staging table (what the sweep drops, with the name).
COPY_TABLE_MARK = "flowport: staging table of a parallel load"


def copy_lock_key(schema: str, name: str) -> tuple[int, int]:
    """The advisory lock key (two 32-bit integers) marking table ``schema.name``, a parallel load's
    staging table, as in use."""
    digest = zlib.crc32(f"{schema}.{name}".encode())
    return _COPY_LOCK_CLASS, digest - (1 << 32) if digest >= 1 << 31 else digest


def _copy_lock(conn: SqlConnection, table: TableName) -> tuple[int, int]:
    schema = table.schema or str(conn.query("SELECT current_schema()")[0][0])
    return copy_lock_key(schema, table.name)


def sweep_copy_tables(conn: SqlConnection, target: TableName) -> list[str]:
    """Drop the staging tables of parallel loads beside ``target`` whose load is gone.

    A parallel load commits its staging table so that its other sessions see
    it, so a load killed outright (its process, its machine) leaves it
    behind. Such a table is named ``<table>__fp_copy_<run>`` and carries the
    comment :data:`COPY_TABLE_MARK` (a user's table of that name without it
    is never touched). Its session held the table's advisory lock until it
    died; a table whose lock can be taken belongs to no running load and is
    dropped.
    Returns the names dropped. A table this user may not drop is left (and
    logged).
    """
    schema_sql = "$2" if target.schema else "current_schema()"
    params = [COPY_TABLE_MARK, *([target.schema] if target.schema else [])]
    rows = conn.query(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND n.nspname = {schema_sql} AND strpos(c.relname, '__fp_copy_') > 0 "
        "AND obj_description(c.oid, 'pg_class') = $1",
        params,
    )
    conn.commit()
    dropped: list[str] = []
    for schema, name in rows:
        table = TableName(str(name), str(schema))
        key = copy_lock_key(str(schema), str(name))
        if not conn.query("SELECT pg_try_advisory_lock($1, $2)", key)[0][0]:
            conn.commit()
            continue  # its load is running
        try:
            conn.execute(f"DROP TABLE IF EXISTS {conn.table_sql(table)}")
            conn.commit()
            dropped.append(str(name))
            log.info("dropped %s, the staging table of a parallel load that did not end", table)
        except Exception as exc:
            conn.rollback()
            log.warning("could not drop %s, left by a parallel load that did not end: %s", table, exc)
        finally:
            conn.query("SELECT pg_advisory_unlock($1, $2)", key)
            conn.commit()
    return dropped
