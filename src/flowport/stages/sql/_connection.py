"""What every SQL vendor's connection offers: quoting, column types, catalog look-ups, statements, reads.

:class:`SqlConnection` is the interface the SQL stages and table loads talk
to; each vendor implements it in its own module under
:mod:`flowport.stages.sql.vendors`, with the driver it reads and loads
fastest with, and describes itself with :class:`Capabilities`: the facts
the shared code branches on (how identifiers are quoted and how long they
may be, how parameters are written, how upserts and ``replace`` publish...),
as data rather than as checks of which class it is.

Identifiers go through :meth:`SqlConnection.quote` without exception; values
always travel as bound parameters.

Besides columns, the catalog look-ups answer two questions a table load
asks: which constraints an existing table enforces (:meth:`SqlConnection.constraints`)
and what depends on it (:meth:`SqlConnection.dependents`: views, foreign
keys, triggers, grants...), which decides how a ``replace`` publishes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa

from flowport.connections.drivers import scrub_message
from flowport.connections.spec import ConnectionSpec
from flowport.stages.sql._identifiers import TableName, check_identifier, work_table_name
from flowport.stages.sql._params import ParamStyle
from flowport.stages.sql._types import (
    DeclaredType,
    KeyConstraint,
    TableConstraints,
    declared_type,
)
from flowport.stages.sqltypes import DefaultValue

if TYPE_CHECKING:
    from flowport.stages.sql._load import TableLoad
    from flowport.stages.sql.kept import KeptConnections

__all__ = [
    "FORMAT_TOKEN",
    "Capabilities",
    "Dependent",
    "Dependents",
    "Row",
    "SqlConnection",
    "format_style",
    "key_constraints",
    "param_text",
]

Row = tuple[Any, ...]

FORMAT_TOKEN = "\x00"


def format_style(sql: str, params: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    """A statement written with :meth:`SqlConnection.param` as the driver's ``%s`` form."""
    if not params:
        return sql, None
    return sql.replace("%", "%%").replace(FORMAT_TOKEN, "%s"), tuple(params)


def param_text(value: Any) -> str | None:
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


@dataclass(frozen=True)
class Capabilities:
    """What a SQL vendor can do and how it spells things: the facts shared code branches on.

    Attributes:
        bulk_path: How batches reach a staging table (for the logs).
        upsert: How an upsert meets a unique key: ``ON CONFLICT``, ``ON DUPLICATE KEY``, or
            UPDATE + INSERT always (unique keys not enforced).
        replace_by_rename: A ``replace`` may swap a staging table in by renaming it (else rows
            are always replaced in place).
        transactional_truncate: TRUNCATE runs inside a transaction rather than committing it,
            so a ``replace`` in place may empty the target with it (PostgreSQL only).
        enforces_unique: Primary keys and unique constraints are enforced (Redshift's are not),
            so a load checks them on its records.
        quote_char: The character identifiers are quoted with.
        identifier_limit: The longest identifier (None: no practical limit).
        limit_in_bytes: ``identifier_limit`` counts UTF-8 bytes rather than characters.
        param_style: How the driver's placeholders are written.
        backslash_escapes: A backslash escapes within string literals.
        names_ignore_case: Column names match whatever their case.
        declared_types: Values carry no type of their own: a reader goes by the columns'
            declarations, and comparisons with stored dates and times are with their text (SQLite).
        explicit_transactions: The driver's connection stays in autocommit and transactions are
            opened with an explicit BEGIN (SQLite, DuckDB), rather than by the DB-API driver.
    """

    bulk_path: str
    upsert: Literal["on conflict", "on duplicate key", "update and insert"] = "on conflict"
    replace_by_rename: bool = False
    transactional_truncate: bool = False
    enforces_unique: bool = True
    quote_char: str = '"'
    identifier_limit: int | None = None
    limit_in_bytes: bool = False
    param_style: ParamStyle = "qmark"
    backslash_escapes: bool = False
    names_ignore_case: bool = False
    declared_types: bool = False
    explicit_transactions: bool = False


class SqlConnection(ABC):
    """A connection to one SQL database, with the vendor's SQL spelled out.

    A vendor is one subclass: its ``vendor`` name (the connection's vendor),
    its :class:`Capabilities` and the :class:`~flowport.stages.sql._load.TableLoad`
    subclass that loads tables for it (``load``). The registry in
    :mod:`flowport.stages.sql.vendors` maps names to these classes.
    """

    vendor: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    load: ClassVar[type[TableLoad]]
    #: Whether a connection of this vendor may serve a later run once :meth:`reset` (see
    #: :class:`~flowport.stages.sql.kept.KeptConnections`).
    reusable: ClassVar[bool] = False
    #: Whether :meth:`present_keys` is offered: an append into a keyed table then asks the server
    #: about each batch's keys instead of reading all of the table's.
    finds_present_keys: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, raw: Any) -> None:
        self.spec = spec
        self.raw = raw
        self._closed = False
        self._keeper: KeptConnections | None = None
        self._lent = False  # a run holds it (from its keeper)

    def lend(self, keeper: KeptConnections) -> None:
        """Hand the connection to a run on behalf of ``keeper``: closing it gives it back to the keeper."""
        self._keeper = keeper
        self._lent = True

    def alive(self) -> bool:
        """Whether the database still answers on this connection."""
        try:
            self.query("SELECT 1")
        except Exception:
            return False
        return True

    def reset(self) -> None:
        """Make the connection what a new one is, for a later run (raises when it cannot)."""
        raise NotImplementedError(f"{self.vendor} connections are not reused")

    @classmethod
    @abstractmethod
    def open(cls, spec: ConnectionSpec) -> SqlConnection:
        """Connect (ConnectionFailed, scrubbed, when the database cannot be reached)."""

    @classmethod
    def open_for_load(cls, spec: ConnectionSpec, mode: str) -> SqlConnection:
        """The connection a table load in ``mode`` starts on (a vendor may pick another driver)."""
        return cls.open(spec)

    def scrub(self, text: str) -> str:
        """``text`` without this connection's secrets."""
        return scrub_message(self.spec, text)

    # -- identifiers ------------------------------------------------------
    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier: any character but NUL is taken literally."""
        q = self.capabilities.quote_char
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
            limit = self.capabilities.identifier_limit
            size = len(part.encode("utf-8")) if self.capabilities.limit_in_bytes else len(part)
            if limit is not None and size > limit:
                unit = "bytes" if self.capabilities.limit_in_bytes else "characters"
                raise ValueError(
                    f"'{part}' is {size} {unit} long; {self.vendor} keeps at most {limit} "
                    "(a longer name would silently refer to another table)"
                )

    def work_table(self, table: TableName, purpose: str, run_id: str) -> TableName:
        """The run's work table beside ``table`` (``<table>__fp_<purpose>_<run>``)."""
        limit = self.capabilities.identifier_limit or 255
        return table.sibling(
            work_table_name(
                table.name, purpose, run_id, limit=limit, in_bytes=self.capabilities.limit_in_bytes
            )
        )

    def same_name(self, a: str, b: str) -> bool:
        """Whether two column names denote the same column for this vendor."""
        return a.lower() == b.lower() if self.capabilities.names_ignore_case else a == b

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
        if self.capabilities.backslash_escapes:
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
        style = self.capabilities.param_style
        if style == "dollar":
            return f"${position}"
        # Drivers with %s placeholders give % a meaning whenever parameters are passed,
        # and a quoted identifier may hold a %: statements carry a NUL (which no
        # identifier can contain) that format_style turns into %s after escaping.
        return FORMAT_TOKEN if style == "format" else "?"

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
        """Close the connection (twice is harmless); one a keeper lent goes back to the keeper,
        which keeps it only once it is reset."""
        if self._closed:
            return
        if self._keeper is not None:
            if not self._lent:  # given back already: the same run closing it again
                return
            self._lent = False
            if self._keeper.keep(self):
                return
        self.discard()

    def discard(self) -> None:
        """Close the connection for good (a keeper's too)."""
        if self._closed:
            return
        self._closed = True
        self._keeper = None
        self.raw.close()

    # -- statements as written, on the vendor's DB-API driver (SQL Executor) --
    @classmethod  # noqa: B027 - most drivers need nothing
    def dbapi_begin(cls, raw: Any) -> None:
        """Open a transaction on a DB-API connection (most drivers open one with the first statement)."""

    @classmethod
    def dbapi_commit(cls, raw: Any) -> None:
        """Commit a DB-API connection's transaction."""
        raw.commit()

    @classmethod
    def dbapi_rollback(cls, raw: Any) -> None:
        """Roll a DB-API connection's transaction back."""
        raw.rollback()

    @classmethod
    def dbapi_run(cls, raw: Any, statement: str) -> None:
        """Run one statement, as written, on a DB-API connection."""
        cursor = raw.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

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
        wanted = frozenset(k.lower() if self.capabilities.names_ignore_case else k for k in keys)
        for found in self.unique_keys(table):
            names = frozenset(k.lower() if self.capabilities.names_ignore_case else k for k in found)
            if names == wanted:
                return True
        return False

    def present_keys(self, table: TableName, columns: Sequence[tuple[str, str]], keys: pa.Table) -> pa.Table:
        """Which of the key tuples ``keys`` (one column per ``(name, SQL type)`` of ``columns``, no
        NULLs) ``table`` holds, found by the server with the key's index (where
        :attr:`finds_present_keys`; elsewhere an append reads every key of the table once, before
        its first batch).
        """
        raise NotImplementedError(f"{self.vendor} connections do not look keys up")

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


def key_constraints(rows: Sequence[Row]) -> list[KeyConstraint]:
    """(constraint name, is primary, column) rows, grouped in order, as key constraints."""
    grouped: dict[str, tuple[bool, list[str]]] = {}
    for name, primary, column in rows:
        grouped.setdefault(str(name), (bool(primary), []))[1].append(str(column))
    return [
        KeyConstraint("PRIMARY KEY" if primary else "UNIQUE", tuple(columns), name)
        for name, (primary, columns) in grouped.items()
    ]
