"""Staged table loads: everything goes into a staging table, the target changes only at commit.

One :class:`TableLoad` per destination run (each vendor's subclass lives in
its module under :mod:`flowport.stages.sql.vendors`). ``write`` bulk-loads batches
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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from flowport.errors import StageError
from flowport.stages._duckdb import DuckSession, arange, duckdb_message
from flowport.stages._files import conform_to
from flowport.stages.sql._connection import SqlConnection
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
    "SEQ",
    "SOURCE_ALIAS",
    "TARGET_ALIAS",
    "TRUNCATE_INSERT",
    "LoadMode",
    "Publish",
    "Rejected",
    "RowChecks",
    "TableLoad",
    "log",
]

log = logging.getLogger("flowport.stages.sql")

LoadMode = Literal["append", "replace", "upsert"]

# The order rows arrived in: with several rows for one key in an upsert, the last one wins.
SEQ = "__fp_seq"
_ROW_NUMBER = "__fp_rn"
_DEDUPED = "__fp_d"
TARGET_ALIAS = "__fp_t"
SOURCE_ALIAS = "__fp_s"

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
    checked in TEMP tables of a shared DuckDB session (private to these
    checks; they spill to disk, so memory stays bounded) holding every key
    accepted so far, and, when appending, the keys of the batch the table
    already holds (or, where the server cannot be asked, all of the table's):
    per batch and key, one query finds the rows whose key is already known
    or repeats an earlier row of the batch.
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
            self._session = DuckSession(shared=True)
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
                f"CREATE TEMP TABLE seen{index} AS "
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
            f"SELECT data_type FROM duckdb_columns() WHERE database_name = 'temp' "
            f"AND table_name = 'seen{index}' ORDER BY column_index"
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
        copy_streams: int | None = 1,
        connect: Callable[[], SqlConnection] | None = None,
    ) -> None:
        self.conn = conn
        #: Opens another connection to the load's database the way its destination opened ``conn``
        #: (a streaming job's kept connections when it has them); None: the vendor's own ``open``.
        self.connect = connect
        self.mode = mode
        #: COPY streams a vendor may run at once into the staging table (PostgreSQL's ``replace``);
        #: None: the vendor decides (PostgreSQL adds a second stream to a large load).
        self.copy_streams = copy_streams
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
        #: An append asks the server, batch by batch, which of the records' keys the table holds.
        self._probe_keys = False

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
                self.in_place = not self.conn.capabilities.replace_by_rename or bool(
                    self.conn.dependents(self.target).block_swap
                )
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
            if self._probe_keys:
                self._seed_present_keys(data)
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
        lowered = [c.lower() if self.conn.capabilities.names_ignore_case else c for c in self.columns]
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
        log.debug(
            "stage %s: staging the records for %s by %s",
            self.stage,
            self.target,
            self.conn.capabilities.bulk_path,
        )
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
        if self.mode != "upsert" and self.conn.capabilities.enforces_unique:
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
            if self.mode == "append" and self.exists and checks.keys:
                # The keys the table holds: asked batch by batch where the server can be asked
                # (its key's index answers; an append of a few rows to a big table reads none of
                # the others), else read all at once.
                self._probe_keys = self.conn.finds_present_keys
                if not self._probe_keys:
                    for key in checks.keys:
                        listed = ", ".join(self._q(c) for c in key.columns)
                        query = f"SELECT {listed} FROM {self.conn.table_sql(self.target)}"
                        checks.seed(key, self.conn.stream(query, {}, 65536))
        except BaseException:
            checks.close()
            raise
        return checks

    @contextmanager
    def _key_lookup(self) -> Iterator[SqlConnection]:
        """The connection that asks the server about a batch's keys (the load's own, unless busy)."""
        yield self.conn

    def _key_columns(self, key: KeyConstraint) -> list[tuple[str, str]]:
        return [(c, self.types[c]) for c in key.columns]

    def _seed_present_keys(self, data: pa.Table) -> None:
        """Tell the checks which keys of this batch the table already holds (asked of the server)."""
        assert self.checks is not None
        for key in self.checks.keys:
            keys = data.select(list(key.columns))
            present = None
            for column in keys.columns:
                if column.null_count:
                    valid = pc.is_valid(column)
                    present = valid if present is None else pc.and_(present, valid)
            if present is not None:
                keys = keys.filter(present)
            if not keys.num_rows:
                continue
            try:
                with self._key_lookup() as conn:
                    found = conn.present_keys(self.target, self._key_columns(key), keys)
            except Exception as exc:
                raise StageError(
                    self.stage,
                    f"checking the keys ({', '.join(key.columns)}) of the records against table "
                    f"'{self.configured}' failed: {self.conn.scrub(str(exc)).strip()}",
                ) from None
            if found.num_rows:
                self.checks.seed(key, found.to_batches())

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
        t, s = self._q(TARGET_ALIAS), self._q(SOURCE_ALIAS)
        return " AND ".join(f"{t}.{self._q(k)} = {s}.{self._q(k)}" for k in self.keys)

    def _values(self) -> list[str]:
        return [c for c in self.columns if c not in self.keys]

    def _upsert_statements(self, target_sql: str, stage_sql: str, *, unique: bool) -> list[str]:
        """ON CONFLICT when a unique key covers the keys, else UPDATE + INSERT (one transaction)."""
        source = self._source(stage_sql)
        s = self._q(SOURCE_ALIAS)
        columns = self._column_list()
        values = self._values()
        if unique and self.conn.capabilities.upsert == "on conflict":
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
                f"UPDATE {target_sql} AS {self._q(TARGET_ALIAS)} SET {assignments} "
                f"FROM ({source}) AS {s} WHERE {self._key_match()}"
            )
        statements.append(self._insert_missing(target_sql, source))
        return statements

    def _insert_missing(self, target_sql: str, source: str) -> str:
        s = self._q(SOURCE_ALIAS)
        selects = ", ".join(f"{s}.{self._q(c)}" for c in self.columns)
        return (
            f"INSERT INTO {target_sql} ({self._column_list()}) SELECT {selects} FROM ({source}) AS {s} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target_sql} AS {self._q(TARGET_ALIAS)} "
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
        if swap and self.conn.capabilities.replace_by_rename and not found.block_swap:
            plan = Publish(RENAME_SWAP, dependents=dependents)
        elif found.referenced_keys and (key := self._merge_key(found.referenced_keys)):
            plan = Publish(MERGE, key, dependents)
        else:
            truncate = found.can_truncate and self.conn.capabilities.transactional_truncate
            plan = Publish(TRUNCATE_INSERT if truncate else DELETE_INSERT, dependents=dependents)
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
        s = self._q(SOURCE_ALIAS)
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
        s = self._q(SOURCE_ALIAS)
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
