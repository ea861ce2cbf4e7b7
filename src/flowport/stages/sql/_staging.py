"""Staged table loads: everything goes into a staging table, the target changes only at commit.

One :class:`TableLoad` per destination run. ``write`` bulk-loads batches
into a staging table that no reader of the target sees; ``commit`` makes the
result visible in one step (one transaction, or MariaDB's atomic multi-table
``RENAME``); ``abort`` throws the staging table away.

Modes:

* ``replace``: the target ends up holding exactly the run's rows. When the
  target exists its definition (types, defaults, indexes) is kept.
* ``append``: the run's rows are added.
* ``upsert``: rows whose key matches an existing row update it, the others
  are added. Within one run, the last row of a key wins.

Where the target does not exist (and ``create_table`` is on) it is created
from the incoming Arrow schema, with each column's declared SQL type when a
Field Mapper set one, the constraints declared after it (``PRIMARY KEY``,
``NOT NULL``, ``UNIQUE``, literal ``DEFAULT``), and a unique key on ``keys``
when they are given. Staging tables stay unconstrained.

Constraints are checked on every batch before it is staged (:class:`RowChecks`):
a record with NULL in a NOT NULL column, or whose primary or unique key an
earlier record of the load (or, appending, a row of the table) already has,
comes back from :meth:`TableLoad.write` as rejected, with a code and a
message naming the column and the constraint, and is not loaded; the other
records load. The checks are vectorised (Arrow null counts and masks; keys
seen so far kept in a private on-disk DuckDB database, one anti-join per
batch). The database keeps the last word: what it still refuses at publish
(a collation that makes ``'a'`` equal ``'A'``, a concurrent writer) fails the
load as before, leaving the target as it was.

How ``replace`` publishes depends on what depends on the target
(:meth:`SqlConnection.dependents`):

* ``rename swap`` (PostgreSQL, Redshift, MariaDB, when nothing depends on
  the target): the staging table, shaped like the target, takes its place
  (DROP + RENAME in the load's transaction on PostgreSQL; one atomic
  ``RENAME TABLE`` on MariaDB). The cheapest: rows are written once.
* ``truncate and insert`` (PostgreSQL with dependent views, grants, triggers,
  outgoing foreign keys...): ``TRUNCATE`` then ``INSERT ... SELECT`` from
  the staging table (a temporary one) in the same transaction. Rows are
  written a second time, and TRUNCATE locks the target against readers
  until COMMIT (they wait, then see the new rows; never a half-loaded table).
* ``delete and insert`` (MariaDB, where TRUNCATE is DDL and commits; Redshift;
  SQLite and DuckDB always): ``DELETE`` then ``INSERT ... SELECT`` in one
  transaction. Readers keep seeing the old rows until COMMIT (MVCC); the old
  rows stay behind as dead rows / undo until vacuumed or purged.
* ``merge on key`` (a foreign key the database enforces references the
  target): deleting every row would fail or cascade into the referencing
  table, so the rows whose key is not in the load are deleted and the others
  are inserted or updated on the key (``ON CONFLICT``/``ON DUPLICATE KEY``),
  in one transaction. It costs an index look-up per row; a referencing row
  whose key disappears from the load makes the database refuse the publish.

Whatever the strategy, a failure leaves the target exactly as it was, and
the chosen strategy and its reasons are logged.
"""

from __future__ import annotations

import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from flowport.connections.drivers import allow_local_infile
from flowport.errors import StageError
from flowport.stages._duckdb import (
    DuckSession,
    arange,
    duckdb_message,
    nested_to_json,
    quote_ident,
    sql_literal,
)
from flowport.stages._files import conform_to
from flowport.stages.sql._dialects import (
    IngestStream,
    MariaDbConnection,
    PostgresConnection,
    RedshiftConnection,
    SqlConnection,
    SqliteConnection,
)
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._types import (
    KeyConstraint,
    TableConstraints,
    declared_constraints,
    decode_extensions,
    flatten_dictionaries,
)

__all__ = [
    "DELETE_INSERT",
    "DUPLICATE_KEY",
    "MERGE",
    "NOT_NULL_VIOLATION",
    "RENAME_SWAP",
    "TRUNCATE_INSERT",
    "LoadMode",
    "Publish",
    "Rejected",
    "RowChecks",
    "TableLoad",
    "table_load",
]

log = logging.getLogger("flowport.stages.sql")

LoadMode = Literal["append", "replace", "upsert"]

# The order rows arrived in: with several rows for one key in an upsert, the last one wins.
SEQ = "__fp_seq"
_ROW_NUMBER = "__fp_rn"
_DEDUPED = "__fp_d"
_TARGET_ALIAS = "__fp_t"
_SOURCE_ALIAS = "__fp_s"

#: Error codes of the records a load rejects.
NOT_NULL_VIOLATION = "SQL_NOT_NULL_VIOLATION"
DUPLICATE_KEY = "SQL_DUPLICATE_KEY"

#: How a ``replace`` publishes (see the module docstring for what each costs).
RENAME_SWAP = "rename swap"
TRUNCATE_INSERT = "truncate and insert"
DELETE_INSERT = "delete and insert"
MERGE = "merge on key"

_SHOWN_VALUE_CHARS = 80


@dataclass(frozen=True)
class Publish:
    """The strategy a ``replace`` publishes with, the merge key, and what depends on the target."""

    strategy: str
    key: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()

    def describe(self) -> str:
        """``merge on key (id)``, ``truncate and insert``..."""
        return f"{self.strategy} ({', '.join(self.key)})" if self.key else self.strategy


@dataclass
class Rejected:
    """Records of one batch a load refused: their positions in the batch, codes and messages."""

    positions: pa.Array[Any]
    codes: pa.Array[Any]
    messages: pa.Array[Any]


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[: _SHOWN_VALUE_CHARS - 3] + "..."


def _ints(array: pa.Array[Any]) -> list[int]:
    return [int(cast(int, v)) for v in array.to_pylist()]


def _flat(array: Any) -> pa.Array[Any]:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


class RowChecks:
    """NOT NULL and key constraints checked on each batch before it is staged.

    NOT NULL costs one null count per column on the happy path. Keys are
    checked in a private on-disk DuckDB database (it spills, so memory stays
    bounded) holding every key accepted so far, and, when appending, the
    keys the table already holds: per batch and key, one query finds the
    rows whose key is already known or repeats an earlier row of the batch.
    Rows with NULL in a key column are not compared (NULLs are distinct in a
    unique key; a primary key's NULLs are NOT NULL violations).
    """

    def __init__(
        self, stage: str, table: str, not_null: Sequence[str], keys: Sequence[KeyConstraint]
    ) -> None:
        self.stage = stage
        self.table = table
        self.not_null = list(not_null)
        self.keys = list(keys)
        self._session: DuckSession | None = None
        self._created = [False] * len(self.keys)

    @property
    def _duck(self) -> DuckSession:
        if self._session is None:
            self._session = DuckSession(on_disk=True)
        return self._session

    def close(self) -> None:
        """Drop the keys seen (the DuckDB database and its folder)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    @staticmethod
    def _names(key: KeyConstraint) -> list[str]:
        return [f"k{i}" for i in range(len(key.columns))]

    def _create(self, index: int, types: Sequence[pa.DataType]) -> None:
        if self._created[index]:
            return
        key = self.keys[index]
        empty = pa.table([pa.array([], t) for t in types], names=self._names(key))
        columns = ", ".join(self._names(key))
        with self._duck.registered("__fp_empty", empty):
            self._duck.execute(
                f"CREATE TABLE seen{index} AS "
                f"SELECT {columns}, CAST(NULL AS VARCHAR) AS src FROM __fp_empty LIMIT 0"
            )
        self._created[index] = True

    def start(self, schema: pa.Schema) -> None:
        """Fix the key types from the first batch (keys over NULL-typed columns cannot be compared)."""
        kept = []
        for key in self.keys:
            types = [schema.field(c).type for c in key.columns]
            if not any(pa.types.is_null(t) for t in types):
                kept.append((key, types))
        self.keys = [k for k, _ in kept]
        self._created = [False] * len(self.keys)
        for index, (_, types) in enumerate(kept):
            self._create(index, types)

    def seed(self, key: KeyConstraint, batches: Iterable[pa.RecordBatch]) -> None:
        """Remember the keys the target already holds (``batches`` of its key columns, in order)."""
        if key not in self.keys:
            return
        index = self.keys.index(key)
        names = self._names(key)
        types = self._duck.table(
            f"SELECT data_type FROM duckdb_columns() WHERE table_name = 'seen{index}' ORDER BY column_index"
        ).column(0)
        casts = ", ".join(f"TRY_CAST({n} AS {t})" for n, t in zip(names, types.to_pylist(), strict=False))
        present = " AND ".join(f"{n} IS NOT NULL" for n in names)
        for batch in batches:
            if not batch.num_rows:
                continue
            data = pa.Table.from_batches([batch]).rename_columns(names)
            with self._duck.registered("__fp_target", data):
                self._duck.execute(
                    f"INSERT INTO seen{index} SELECT {casts}, 'table' FROM __fp_target WHERE {present}"
                )

    def check(self, data: pa.Table) -> tuple[pa.Table, Rejected | None]:
        """The rows of ``data`` that pass, and the rejected ones (None when all pass)."""
        bad: pa.Array[Any] | None = None
        nulls: list[tuple[str, pa.Array[Any]]] = []
        for column in self.not_null:
            values = data.column(column)
            if values.null_count:
                mask = _flat(pc.is_null(values))
                nulls.append((column, mask))
                bad = mask if bad is None else pc.or_(bad, mask)
        duplicates: list[tuple[KeyConstraint, pa.Array[Any], pa.Array[Any]]] = []
        try:
            for index, key in enumerate(self.keys):
                positions, sources = self._duplicates(index, key, data, bad)
                if len(positions):
                    duplicates.append((key, positions, sources))
                    mask = pc.is_in(arange(data.num_rows), value_set=positions)
                    bad = mask if bad is None else pc.or_(bad, mask)
            accepted = data if bad is None else data.filter(pc.invert(bad))
            for index, key in enumerate(self.keys):
                self._remember(index, key, accepted)
        except duckdb.Error as exc:
            raise StageError(
                self.stage, f"checking the keys of the records failed: {duckdb_message(exc)}"
            ) from exc
        if bad is None or accepted.num_rows == data.num_rows:
            return data, None
        return accepted, self._rejected(data, bad, nulls, duplicates)

    def _duplicates(
        self, index: int, key: KeyConstraint, data: pa.Table, bad: pa.Array[Any] | None
    ) -> tuple[pa.Array[Any], pa.Array[Any]]:
        """Positions of the rows whose key is known already or repeats an earlier row, and where from."""
        names = self._names(key)
        keys = pa.table(
            [data.column(c) for c in key.columns] + [arange(data.num_rows)], names=[*names, "pos"]
        )
        candidate: pa.Array[Any] | None = None if bad is None else pc.invert(bad)
        for name in names:
            if keys.column(name).null_count:
                valid = _flat(pc.is_valid(keys.column(name)))
                candidate = valid if candidate is None else pc.and_(candidate, valid)
        if candidate is not None:
            keys = keys.filter(candidate)
        if not keys.num_rows:
            return pa.array([], pa.int64()), pa.array([], pa.string())
        match = " AND ".join(f"k.{n} = s.{n}" for n in names)
        partition = ", ".join(f"k.{n}" for n in names)
        with self._duck.registered("__fp_keys", keys):
            found = self._duck.table(
                f"SELECT k.pos, s.src FROM __fp_keys AS k LEFT JOIN seen{index} AS s ON {match} "
                "QUALIFY s.src IS NOT NULL "
                f"OR row_number() OVER (PARTITION BY {partition} ORDER BY k.pos) > 1 "
                "ORDER BY k.pos"
            )
        return _flat(found.column(0)).cast(pa.int64()), _flat(found.column(1))

    def _remember(self, index: int, key: KeyConstraint, accepted: pa.Table) -> None:
        names = self._names(key)
        keys = pa.table([accepted.column(c) for c in key.columns], names=names)
        present = " AND ".join(f"{n} IS NOT NULL" for n in names)
        with self._duck.registered("__fp_keys", keys):
            self._duck.execute(
                f"INSERT INTO seen{index} SELECT {', '.join(names)}, 'load' FROM __fp_keys WHERE {present}"
            )

    def _rejected(
        self,
        data: pa.Table,
        bad: pa.Array[Any],
        nulls: list[tuple[str, pa.Array[Any]]],
        duplicates: list[tuple[KeyConstraint, pa.Array[Any], pa.Array[Any]]],
    ) -> Rejected:
        """Codes and messages for the rejected rows only (the happy path never gets here)."""
        positions = pc.indices_nonzero(bad)
        reasons: dict[int, list[tuple[str, str]]] = {p: [] for p in _ints(positions)}
        for column, mask in nulls:
            for p in _ints(pc.indices_nonzero(mask)):
                reasons[p].append(
                    (
                        NOT_NULL_VIOLATION,
                        f"column '{column}' of table '{self.table}' is NOT NULL and the record has no value",
                    )
                )
        for key, rows, sources in duplicates:
            values = data.select(list(key.columns)).take(rows).to_pylist()
            for p, source, row in zip(_ints(rows), sources.to_pylist(), values, strict=True):
                shown = ", ".join(_shown(v) for v in row.values())
                where = (
                    "the table already holds this key"
                    if source == "table"
                    else "an earlier record of this load has the same key"
                )
                reasons[p].append(
                    (
                        DUPLICATE_KEY,
                        f"duplicate key ({', '.join(key.columns)})=({shown}) violates the {key.kind} "
                        f"of table '{self.table}': {where}",
                    )
                )
        ordered = [reasons[p] for p in _ints(positions)]
        return Rejected(
            positions=positions,
            codes=pa.array([r[0][0] for r in ordered], pa.string()),
            messages=pa.array(["; ".join(m for _, m in r) for r in ordered], pa.string()),
        )


def _decoded(table: pa.Table) -> pa.Table:
    if not any(isinstance(f.type, pa.BaseExtensionType) for f in table.schema):
        return table
    batches = [decode_extensions(b) for b in table.to_batches()]
    # The engine never hands over an empty batch; an empty table needs no decoding anyway.
    return pa.Table.from_batches(batches) if batches else table


class TableLoad(ABC):
    """Loading one run's records into one table, staged until :meth:`commit`."""

    #: Whether ``replace`` can swap a staging table in by renaming (else rows are replaced in place).
    can_swap: ClassVar[bool] = False

    def __init__(
        self,
        conn: SqlConnection,
        table: TableName,
        *,
        mode: LoadMode,
        keys: Sequence[str],
        create_table: bool,
        run_id: str,
        stage: str,
    ) -> None:
        self.conn = conn
        self.mode = mode
        self.keys = list(keys)
        self.create_table = create_table
        self.run_id = run_id
        self.stage = stage
        self.configured = table
        self.target = table
        self.exists = False
        self.target_columns: list[tuple[str, str]] = []
        self.columns: list[str] = []  # target-side names of the loaded columns, in incoming order
        self.types: dict[str, str] = {}  # target-side column -> SQL type
        self.incoming: pa.Schema | None = None
        self.renames: list[str] = []
        self.rows = 0
        self.started = False
        self.finished = False
        #: The constraints of the existing target (read at prepare) or of the one to create (declared).
        self.target_constraints = TableConstraints()
        self.declared = TableConstraints()
        self.checks: RowChecks | None = None
        #: ``replace`` into an existing target: the rows are replaced in place (no rename swap).
        self.in_place = False

    # -- lifecycle --------------------------------------------------------
    def prepare(self) -> None:
        """Check the target before any record arrives (fail early on a missing table)."""
        self.target, self.exists = self.conn.locate(self.configured)
        self.conn.check_table(self.target)
        if self.exists:
            self.target_columns = self.conn.columns(self.target)
            self.target_constraints = self.conn.constraints(self.target)
            if self.mode == "replace":
                # Decided now because it shapes the staging table; checked again at publish.
                self.in_place = not self.can_swap or bool(self.conn.dependents(self.target).block_swap)
        elif not self.create_table:
            raise StageError(
                self.stage,
                f"table '{self.configured}' does not exist and create_table is off; "
                "create it first or turn create_table on",
            )

    def write(self, data: pa.Table) -> Rejected | None:
        """Stage one batch (the first one fixes the columns); the records violating a constraint
        of the target are not staged but returned."""
        data = _decoded(flatten_dictionaries(data))
        if not self.started:
            self._begin(data.schema)
        assert self.incoming is not None
        data = conform_to(data, self.incoming, self.stage)
        data = data.rename_columns(self.renames)
        rejected = None
        if self.checks is not None:
            data, rejected = self.checks.check(data)
        if self.mode == "upsert":
            data = data.append_column(SEQ, pc.add(arange(data.num_rows), self.rows))
        if data.num_rows:
            self._load(data)
        self.rows += data.num_rows
        return rejected

    def commit(self) -> None:
        """Make the staged rows visible at once."""
        if self.finished:
            return
        if not self.started and not (self.mode == "replace" and self.exists):
            # Nothing arrived: appending or upserting nothing changes nothing, and
            # a table that does not exist cannot be created without a schema.
            if not self.exists:
                log.warning("stage %s received no records: table %s was not created", self.stage, self.target)
            self.finished = True
            self._cleanup()
            self.close()
            return
        self._publish()
        self.finished = True
        self._cleanup()
        self.close()

    def abort(self) -> None:
        """Throw the staged rows away; the target stays as it was."""
        if self.finished:
            return
        self.finished = True
        try:
            self._discard()
        finally:
            self._cleanup()
            self.close()

    def close(self) -> None:
        """Release what the checks hold (after commit or abort)."""
        if self.checks is not None:
            self.checks.close()

    # -- column mapping ---------------------------------------------------
    def _begin(self, schema: pa.Schema) -> None:
        self.incoming = schema
        names = schema.names
        if not names:
            raise StageError(self.stage, "the records have no columns to write")
        if self.exists:
            renames = []
            for name in names:
                match = [c for c, _ in self.target_columns if c == name] or [
                    c for c, _ in self.target_columns if c.lower() == name.lower()
                ]
                if len(match) != 1:
                    known = ", ".join(c for c, _ in self.target_columns)
                    raise StageError(
                        self.stage,
                        f"column '{name}' is not a column of table '{self.configured}' (columns: {known}); "
                        "map or drop it with a Field Mapper",
                    )
                renames.append(match[0])
            self.renames = renames
        else:
            self.renames = list(names)
        self.columns = list(self.renames)
        lowered = [c.lower() if self.conn.names_ignore_case else c for c in self.columns]
        if len(set(lowered)) != len(lowered):
            raise StageError(self.stage, f"columns {', '.join(names)} collide once matched to the table")
        if self.keys:
            missing = [k for k in self.keys if not any(self.conn.same_name(k, c) for c in self.columns)]
            if missing:
                raise StageError(
                    self.stage,
                    f"key column(s) {', '.join(missing)} are not in the records "
                    f"(columns: {', '.join(names)})",
                )
            self.keys = [next(c for c in self.columns if self.conn.same_name(k, c)) for k in self.keys]
        if self.exists:
            types = dict(self.target_columns)
            self.types = {c: types[c] for c in self.columns}
        else:
            self.declared = self._declared_constraints(schema)
            self.types = {f.name: self.conn.column_sql(f, key=self._is_key(f.name)) for f in schema}
        self.checks = self._row_checks(schema)
        self.started = True
        self._create_stage()

    def _is_key(self, name: str) -> bool:
        return any(self.conn.same_name(k, name) for k in self.keys) or any(
            name in key.columns for key in self.declared.keys
        )

    def _declared_constraints(self, schema: pa.Schema) -> TableConstraints:
        """The constraints a Field Mapper declared after the types, and a unique key on ``keys``."""
        declared = TableConstraints()
        primary: list[str] = []
        primary_name: str | None = None
        unique: list[KeyConstraint] = []
        for f in schema:
            column = declared_constraints(f)
            if column.primary_key:
                primary.append(f.name)
                primary_name = primary_name or column.primary_key_name
            if column.required:
                declared.not_null.append(f.name)
            if column.unique and not column.primary_key:
                unique.append(KeyConstraint("UNIQUE", (f.name,), column.unique_name))
            if column.default is not None:
                declared.defaults[f.name] = column.default
        if len(primary) > 1:
            raise StageError(
                self.stage,
                f"PRIMARY KEY is declared on {len(primary)} columns ({', '.join(primary)}); a table has one "
                "primary key: declare it on one column (UNIQUE or NOT NULL on the others), or list the "
                "columns in keys",
            )
        if primary:
            declared.keys.append(KeyConstraint("PRIMARY KEY", tuple(primary), primary_name))
        declared.keys += unique
        # Keys identify a row whatever the mode (a dataset's PRIMARY KEY), so a created table enforces them.
        if self.keys and not any(set(k.columns) == set(self.keys) for k in declared.keys):
            declared.keys.append(KeyConstraint("UNIQUE", tuple(self.keys)))
        return declared

    def _row_checks(self, schema: pa.Schema) -> RowChecks | None:
        """The checks for the constraints of the target that the loaded columns can violate.

        NOT NULL in every mode; keys in ``replace`` (the load is the new
        content) and ``append`` (with the keys already in the table), not in
        ``upsert`` (a key coming again updates its row).
        """
        constraints = self.target_constraints if self.exists else self.declared

        def loaded(name: str) -> str | None:
            return next((c for c in self.columns if self.conn.same_name(c, name)), None)

        not_null = [c for c in (loaded(n) for n in constraints.not_null) if c is not None]
        keys: list[KeyConstraint] = []
        if self.mode != "upsert" and self.conn.enforces_unique:
            for key in constraints.keys:
                columns = [loaded(c) for c in key.columns]
                if all(c is not None for c in columns):
                    keys.append(KeyConstraint(key.kind, tuple(c for c in columns if c is not None), key.name))
        if not not_null and not keys:
            return None
        checks = RowChecks(self.stage, str(self.configured), not_null, keys)
        incoming = pa.schema([pa.field(c, f.type) for c, f in zip(self.columns, schema, strict=True)])
        try:
            checks.start(incoming)
            if self.mode == "append" and self.exists:
                for key in checks.keys:
                    listed = ", ".join(self._q(c) for c in key.columns)
                    query = f"SELECT {listed} FROM {self.conn.table_sql(self.target)}"
                    checks.seed(key, self.conn.stream(query, {}, 65536))
        except BaseException:
            checks.close()
            raise
        return checks

    def _ddl_columns(self) -> list[tuple[str, str]]:
        return [(c, self.types[c]) for c in self.columns]

    # -- SQL shared by the vendors ---------------------------------------
    def _q(self, name: str) -> str:
        return self.conn.quote(name)

    def _column_list(self) -> str:
        return ", ".join(self._q(c) for c in self.columns)

    def _expression(self, column: str) -> str:
        """How a staged column is read into the target (vendors with loose staging types cast)."""
        return self._q(column)

    def _source(self, stage_sql: str) -> str:
        """The staged rows as they go into the target: typed and, for upserts, one per key."""
        selects = ", ".join(f"{self._expression(c)} AS {self._q(c)}" for c in self.columns)
        if self.mode != "upsert":
            return f"SELECT {selects} FROM {stage_sql}"
        keys = ", ".join(self._q(k) for k in self.keys)
        inner = (
            f"SELECT {selects}, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {self._q(SEQ)} DESC) "
            f"AS {self._q(_ROW_NUMBER)} FROM {stage_sql}"
        )
        return (
            f"SELECT {self._column_list()} FROM ({inner}) AS {self._q(_DEDUPED)} "
            f"WHERE {self._q(_ROW_NUMBER)} = 1"
        )

    def _insert(self, target_sql: str, stage_sql: str) -> str:
        return f"INSERT INTO {target_sql} ({self._column_list()}) {self._source(stage_sql)}"

    def _key_match(self) -> str:
        t, s = self._q(_TARGET_ALIAS), self._q(_SOURCE_ALIAS)
        return " AND ".join(f"{t}.{self._q(k)} = {s}.{self._q(k)}" for k in self.keys)

    def _values(self) -> list[str]:
        return [c for c in self.columns if c not in self.keys]

    def _upsert_statements(self, target_sql: str, stage_sql: str, *, unique: bool) -> list[str]:
        """ON CONFLICT when a unique key covers the keys, else UPDATE + INSERT (one transaction)."""
        source = self._source(stage_sql)
        s = self._q(_SOURCE_ALIAS)
        columns = self._column_list()
        values = self._values()
        if unique and self.conn.supports_on_conflict:
            keys = ", ".join(self._q(k) for k in self.keys)
            action = (
                "DO UPDATE SET " + ", ".join(f"{self._q(c)} = EXCLUDED.{self._q(c)}" for c in values)
                if values
                else "DO NOTHING"
            )
            # "WHERE true": SQLite would otherwise read ON CONFLICT as a join constraint.
            return [
                f"INSERT INTO {target_sql} ({columns}) SELECT {columns} FROM ({source}) AS {s} "
                f"WHERE true ON CONFLICT ({keys}) {action}"
            ]
        statements = []
        if values:
            assignments = ", ".join(f"{self._q(c)} = {s}.{self._q(c)}" for c in values)
            statements.append(
                f"UPDATE {target_sql} AS {self._q(_TARGET_ALIAS)} SET {assignments} "
                f"FROM ({source}) AS {s} WHERE {self._key_match()}"
            )
        statements.append(self._insert_missing(target_sql, source))
        return statements

    def _insert_missing(self, target_sql: str, source: str) -> str:
        s = self._q(_SOURCE_ALIAS)
        selects = ", ".join(f"{s}.{self._q(c)}" for c in self.columns)
        return (
            f"INSERT INTO {target_sql} ({self._column_list()}) SELECT {selects} FROM ({source}) AS {s} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target_sql} AS {self._q(_TARGET_ALIAS)} "
            f"WHERE {self._key_match()})"
        )

    def _publish_statements(self, target_sql: str, stage_sql: str, *, created: bool) -> list[str]:
        """The statements that move staged rows into an existing (or just created) target."""
        if self.mode == "replace":
            if created or not self.exists:
                return [self._insert(target_sql, stage_sql)]
            return self._in_place_statements(target_sql, stage_sql, self._plan(swap=False))
        if self.mode == "append" or created:
            return [self._insert(target_sql, stage_sql)]
        unique = self.conn.has_unique_key(self.target, self.keys)
        if not unique:
            log.info(
                "stage %s: no unique key on (%s) in %s; upserting with UPDATE + INSERT",
                self.stage,
                ", ".join(self.keys),
                self.target,
            )
        return self._upsert_statements(target_sql, stage_sql, unique=unique)

    def _create_target_sql(self, table: TableName) -> str:
        return self.conn.create_table_sql(table, self._ddl_columns(), constraints=self.declared)

    # -- replace: how the rows get into the target ---------------------------
    def _plan(self, *, swap: bool) -> Publish:
        """How this ``replace`` publishes now (``swap``: a rename swap is possible), logged."""
        found = self.conn.dependents(self.target)
        dependents = tuple(str(d) for d in found.items)
        if swap and self.can_swap and not found.block_swap:
            plan = Publish(RENAME_SWAP, dependents=dependents)
        elif found.referenced_keys and (key := self._merge_key(found.referenced_keys)):
            plan = Publish(MERGE, key, dependents)
        else:
            plan = Publish(TRUNCATE_INSERT if found.can_truncate else DELETE_INSERT, dependents=dependents)
        log.info(
            "stage %s: replacing the rows of %s by %s%s",
            self.stage,
            self.target,
            plan.describe(),
            f"; depending on it: {', '.join(dependents)}" if dependents else "; nothing depends on it",
        )
        return plan

    def _merge_key(self, referenced: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
        """A unique key of the target that the load carries: a referenced one first, else the primary key."""
        candidates = [*referenced, *(k.columns for k in self.target_constraints.keys)]
        for key in candidates:
            columns = [next((c for c in self.columns if self.conn.same_name(c, k)), None) for k in key]
            if columns and all(c is not None for c in columns):
                return tuple(c for c in columns if c is not None)
        return ()

    def _in_place_statements(self, target_sql: str, source_sql: str | None, plan: Publish) -> list[str]:
        """Statements replacing the target's rows with those of ``source_sql`` (None: no row arrived)."""
        empty = (
            f"TRUNCATE TABLE {target_sql}"
            if plan.strategy == TRUNCATE_INSERT
            else f"DELETE FROM {target_sql}"
        )
        if source_sql is None:
            return [empty]
        if plan.strategy == MERGE:
            return self._merge_statements(target_sql, source_sql, plan.key)
        return [empty, self._insert(target_sql, source_sql)]

    def _merge_statements(self, target_sql: str, source_sql: str, key: Sequence[str]) -> list[str]:
        """Delete the rows whose key is not in the load, then insert or update the others on ``key``."""
        source = self._source(source_sql)
        s = self._q(_SOURCE_ALIAS)
        match = " AND ".join(f"{s}.{self._q(k)} = {target_sql}.{self._q(k)}" for k in key)
        return [
            f"DELETE FROM {target_sql} WHERE NOT EXISTS (SELECT 1 FROM ({source}) AS {s} WHERE {match})",
            self._merge_upsert(target_sql, source, key),
        ]

    def _unloaded(self) -> list[str]:
        """Target columns the load does not carry (a replace leaves them at their defaults)."""
        return [c for c, _ in self.target_columns if c not in self.columns]

    def _reset(self, column: str) -> str:
        """The value a column the load does not carry gets when a merge updates its row."""
        return "DEFAULT"

    def _merge_upsert(self, target_sql: str, source: str, key: Sequence[str]) -> str:
        s = self._q(_SOURCE_ALIAS)
        columns = self._column_list()
        assignments = [f"{self._q(c)} = EXCLUDED.{self._q(c)}" for c in self.columns if c not in key]
        assignments += [f"{self._q(c)} = {self._reset(c)}" for c in self._unloaded()]
        action = "DO UPDATE SET " + ", ".join(assignments) if assignments else "DO NOTHING"
        keys = ", ".join(self._q(k) for k in key)
        # "WHERE true": SQLite would otherwise read ON CONFLICT as a join constraint.
        return (
            f"INSERT INTO {target_sql} ({columns}) SELECT {columns} FROM ({source}) AS {s} "
            f"WHERE true ON CONFLICT ({keys}) {action}"
        )

    # -- vendor hooks -----------------------------------------------------
    @abstractmethod
    def _create_stage(self) -> None:
        """Create the staging table for ``self.columns`` (and SEQ when upserting)."""

    @abstractmethod
    def _load(self, data: pa.Table) -> None:
        """Bulk-load one batch (already renamed to the target's columns) into the staging table."""

    @abstractmethod
    def _publish(self) -> None:
        """Make the staged rows visible in one step."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove every trace of the run."""

    def _cleanup(self) -> None:  # noqa: B027 - most vendors hold nothing local
        """Release local resources (temporary files)."""


# ---------------------------------------------------------------------------
# PostgreSQL and Redshift: everything in one transaction
# ---------------------------------------------------------------------------

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
    """PostgreSQL and Redshift: the whole load is one transaction.

    PostgreSQL DDL is transactional, so the staging table, the load and the
    swap happen in the transaction the connection holds from ``open``:
    readers see the old target until COMMIT, and a failed or killed run
    leaves nothing behind (the server rolls it back). ``replace`` fills a
    staging table shaped like the target, then DROPs the target and RENAMEs
    the staging table in its place; when something depends on the target
    (views, foreign keys, grants, triggers...) the staging table is a
    temporary one and its rows replace the target's in place (TRUNCATE, or
    DELETE, or a merge on the key a foreign key references). ``append`` and
    ``upsert`` load a temporary table and INSERT from it.
    """

    can_swap = True

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self._duck: DuckSession | None = None
        self.stage_table: TableName | None = None  # the typed staging table (replace)
        self.stage_temporary = False  # a temporary staging table, for a replace in place
        self.raw_table: TableName | None = None  # the temporary table batches land in
        self.binary_types: dict[str, pa.DataType] | None = None
        self._raw_created = False
        self._stream: IngestStream | None = None

    @property
    def duck(self) -> DuckSession:
        """A DuckDB session to render nested values as JSON."""
        if self._duck is None:
            self._duck = DuckSession()
        return self._duck

    def _create_stage(self) -> None:
        assert isinstance(self.conn, (PostgresConnection, RedshiftConnection))
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
            else:
                self.stage_table = self.conn.work_table(self.target, "stage", self.run_id)
                self._create_replacement(self.stage_table)
                stage_types = dict(self.conn.columns(self.stage_table))
            if isinstance(self.conn, PostgresConnection):
                binary: dict[str, pa.DataType] = {}
                assert self.incoming is not None
                for f, column in zip(self.incoming, self.columns, strict=True):
                    target = _pg_binary_type(stage_types.get(column, ""))
                    cast_to = _binary_cast(f.type, target) if target is not None else None
                    if cast_to is None:
                        break
                    binary[column] = cast_to
                else:
                    # Every column goes straight into the staging table with binary COPY.
                    self.binary_types = binary
            self.types = {c: stage_types.get(c, self.types[c]) for c in self.columns}
        if self.binary_types is None and isinstance(self.conn, RedshiftConnection):
            loose = [(c, self.conn.arrow_sql(self._loose_field_type(c))) for c in self.columns]
            if self.mode == "upsert":
                loose.append((SEQ, "bigint"))
            self.conn.execute(self.conn.create_table_sql(self.raw_table, loose, temporary=True))
            self._raw_created = True

    def _loose_field_type(self, column: str) -> pa.DataType:
        assert self.incoming is not None
        index = self.columns.index(column)
        t = self.incoming.field(index).type
        sample = _pg_loose(pa.table({"c": pa.array([], t)}), self.duck)
        loose: pa.DataType = sample.schema.field(0).type
        return loose

    def _create_replacement(self, table: TableName) -> None:
        if self.exists:
            like = "INCLUDING ALL" if isinstance(self.conn, PostgresConnection) else "INCLUDING DEFAULTS"
            self.conn.execute(
                f"CREATE TABLE {self.conn.table_sql(table)} (LIKE {self.conn.table_sql(self.target)} {like})"
            )
        else:
            self.conn.execute(self._create_target_sql(table))

    def _load(self, data: pa.Table) -> None:
        assert self.raw_table is not None
        if self.binary_types is not None:
            assert isinstance(self.conn, PostgresConnection) and self.stage_table is not None
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
        loose = _pg_loose(data, self.duck)
        if isinstance(self.conn, PostgresConnection):
            self._feed(self.raw_table, loose, temporary=True, create=not self._raw_created)
            self._raw_created = True
        else:
            assert isinstance(self.conn, RedshiftConnection)
            self.conn.insert_rows(self.raw_table, loose.column_names, loose)

    def _feed(self, table: TableName, data: pa.Table, *, temporary: bool, create: bool) -> None:
        """Send a batch into the load's single COPY stream (started by the first batch)."""
        assert isinstance(self.conn, PostgresConnection)
        if self._stream is None:
            self._stream = self.conn.ingest_stream(table, data.schema, create=create, temporary=temporary)
        self._stream.put(data)

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
            if isinstance(conn, PostgresConnection):
                self._rename_dependents(conn, self.stage_table.name)
        else:
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

    def _rename_dependents(self, conn: PostgresConnection, stage_name: str) -> None:
        """Give the indexes, constraints and sequences ``LIKE ... INCLUDING ALL`` named after the
        staging table their usual names after the target (``orders_pkey``, not ``orders__fp_stage_..._pkey``).
        """
        table = conn.table_sql(self.target)
        schema = conn.quote(self.target.schema or "public")
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
            new = self.target.name + name[len(stage_name) :]
            if len(new.encode("utf-8")) > 63:
                continue  # PostgreSQL would cut it: keep the working name rather than risk a clash
            renamed.add(name)
            if kind == "CONSTRAINT":
                conn.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {conn.quote(name)} TO {conn.quote(new)}")
            else:
                conn.execute(f"ALTER {kind} {schema}.{conn.quote(name)} RENAME TO {conn.quote(new)}")

    def _discard(self) -> None:
        self._end_stream(cancel=True)
        self.conn.rollback()

    def _cleanup(self) -> None:
        self._end_stream(cancel=True)
        if self._duck is not None:
            self._duck.close()
            self._duck = None


# ---------------------------------------------------------------------------
# MariaDB / MySQL: LOAD DATA LOCAL INFILE, atomic RENAME TABLE
# ---------------------------------------------------------------------------


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

    can_swap = True

    def __init__(self, conn: SqlConnection, table: TableName, **kwargs: Any) -> None:
        super().__init__(conn, table, **kwargs)
        self._duck: DuckSession | None = None
        self._directory: Path | None = None
        self.stage_table: TableName | None = None
        self.temporary = self.mode != "replace"
        #: LOAD DATA LOCAL INFILE until the server refuses it (local_infile off), then multi-row INSERTs.
        self.load_data = True

    @property
    def my(self) -> MariaDbConnection:
        """The connection, typed."""
        assert isinstance(self.conn, MariaDbConnection)
        return self.conn

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
            problems = self.my.warnings()
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
        s = self._q(_SOURCE_ALIAS)
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
        s = self._q(_SOURCE_ALIAS)
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
            t = self._q(_TARGET_ALIAS)
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


# ---------------------------------------------------------------------------
# SQLite: a temporary staging table, one write transaction at commit
# ---------------------------------------------------------------------------


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
            self._duck = DuckSession()
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
        assert isinstance(self.conn, SqliteConnection)
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


# ---------------------------------------------------------------------------
# DuckDB: one transaction around the whole load
# ---------------------------------------------------------------------------


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


_LOADS: dict[str, type[TableLoad]] = {
    "postgresql": PostgresLoad,
    "redshift": PostgresLoad,
    "mysql": MariaDbLoad,
    "sqlite": SqliteLoad,
    "duckdb": DuckDbLoad,
}


def table_load(
    conn: SqlConnection,
    table: TableName,
    *,
    mode: LoadMode,
    keys: Sequence[str],
    create_table: bool,
    run_id: str,
    stage: str,
) -> TableLoad:
    """The staged load for the connection's vendor."""
    cls = _LOADS[conn.vendor]
    return cls(conn, table, mode=mode, keys=keys, create_table=create_table, run_id=run_id, stage=stage)
