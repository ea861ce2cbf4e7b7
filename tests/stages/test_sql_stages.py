"""The SQL stages against real PostgreSQL, MariaDB, SQLite and DuckDB databases.

PostgreSQL and MariaDB get one uniquely named database per test session
(dropped at the end); every test uses its own table names in it. SQLite and
DuckDB databases are files under the test's tmp_path.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pydantic import SecretStr
from tests.conftest import require_service

from flowport.connections.spec import ConnectionSpec
from flowport.errors import NotFound, StageError
from flowport.plugins.contract import MemoryStageState, StageContext, StagePlugin
from flowport.stages.processors.field_mapper import FieldMapper
from flowport.stages.sql.executor import SqlExecutor
from flowport.stages.sql.query_origin import SqlQueryOrigin
from flowport.stages.sql.table_destination import SqlTableDestination
from flowport.stages.sql.table_origin import SqlTableOrigin
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY

PG = ("PostgreSQL", "127.0.0.1", 5432)
MARIA = ("MariaDB", "127.0.0.1", 3306)
VENDORS = ["postgresql", "mysql", "sqlite", "duckdb"]


# ---------------------------------------------------------------------------
# Connections and databases
# ---------------------------------------------------------------------------


class Lookup:
    """A tiny ConnectionLookup: connections by name or uuid."""

    def __init__(self, *specs: ConnectionSpec) -> None:
        self.specs = list(specs)

    def get(self, ref: str) -> ConnectionSpec:
        for spec in self.specs:
            if ref in (spec.name, str(spec.uuid)):
                return spec
        raise NotFound(f"Connection '{ref}' does not exist")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    require_service(*PG)
    import psycopg

    name = f"fp_sql_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def maria_database() -> Iterator[str]:
    require_service(*MARIA)
    import pymysql

    name = f"fp_sql_test_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    yield name
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@dataclass
class Db:
    """One test database: its connection spec and a side connection for setting up and checking."""

    vendor: str
    spec: ConnectionSpec
    raw: Any
    prefix: str
    _count: list[int] = field(default_factory=lambda: [0])

    @property
    def lookup(self) -> Lookup:
        return Lookup(self.spec)

    def name(self, base: str = "t") -> str:
        """A table name nobody else in this session uses."""
        self._count[0] += 1
        return f"{base}_{self.prefix}_{self._count[0]}"

    def quote(self, name: str) -> str:
        if self.vendor == "mysql":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def run(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the side connection (autocommit) and return any rows."""
        if self.vendor == "duckdb":
            result = self.raw.execute(sql, list(params) if params else [])
            try:
                return [tuple(r) for r in result.fetchall()]
            except duckdb.Error:
                return []
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, params) if params else cursor.execute(sql)
            if cursor.description is None:
                return []
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def rows(self, table: str, order: str = "id") -> list[tuple[Any, ...]]:
        return self.run(f"SELECT * FROM {self.quote(table)} ORDER BY {self.quote(order)}")

    def tables(self) -> set[str]:
        """Every table name in the test database (temporary ones of other sessions excluded)."""
        if self.vendor == "postgresql":
            rows = self.run(
                "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        elif self.vendor == "mysql":
            rows = self.run(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            )
        elif self.vendor == "sqlite":
            rows = self.run("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.run("SELECT table_name FROM duckdb_tables()")
        return {str(r[0]) for r in rows}

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> the database's own type text."""
        if self.vendor == "postgresql":
            rows = self.run(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                (self.quote(table),),
            )
        elif self.vendor == "mysql":
            rows = self.run(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
        elif self.vendor == "sqlite":
            rows = [(r[1], r[2]) for r in self.run(f"PRAGMA table_info({self.quote(table)})")]
        else:
            rows = self.run(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", (table,)
            )
        return {str(n): str(t) for n, t in rows}


def _open_db(vendor: str, tmp_path: Path, request: pytest.FixtureRequest) -> Db:
    prefix = uuid.uuid4().hex[:6]
    if vendor in ("postgresql", "redshift"):
        database = request.getfixturevalue("pg_database")
        import psycopg

        spec = ConnectionSpec(
            name=f"pg-{vendor}",
            vendor=vendor,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=5432,
            username="postgres",
            params={"defaultDatabase": database},
        )
        raw = psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)
        return Db("postgresql", spec, raw, prefix)
    if vendor == "mysql":
        database = request.getfixturevalue("maria_database")
        import pymysql

        spec = ConnectionSpec(
            name="maria",
            vendor="mysql",
            host="127.0.0.1",
            port=3306,
            username="root",
            params={"defaultDatabase": database},
        )
        raw = pymysql.connect(host="127.0.0.1", user="root", database=database, autocommit=True)
        return Db("mysql", spec, raw, prefix)
    if vendor == "sqlite":
        import sqlite3

        path = tmp_path / "test.sqlite"
        spec = ConnectionSpec(name="lite", vendor="sqlite", params={"path": str(path)})
        return Db("sqlite", spec, sqlite3.connect(path, isolation_level=None), prefix)
    path = tmp_path / "test.duckdb"
    spec = ConnectionSpec(name="duck", vendor="duckdb", params={"path": str(path)})
    return Db("duckdb", spec, duckdb.connect(str(path)), prefix)


@pytest.fixture(params=VENDORS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    handle = _open_db(request.param, tmp_path, request)
    yield handle
    handle.raw.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make(Plugin, lookup, context={...}, **config)``: a plugin built as the engine does, closed after."""
    made: list[StagePlugin[Any]] = []

    def _make(
        cls: type[StagePlugin[Any]], lookup: Lookup, *, context: dict[str, Any] | None = None, **config: Any
    ) -> Any:
        options: dict[str, Any] = {"resources": {"connections": lookup}, **(context or {})}
        ctx = StageContext(stage_name="SQL_01", run_id="r1", base_dir=tmp_path, **options)
        plugin = cls(cls.config_model(**config), ctx)
        made.append(plugin)
        return plugin

    yield _make
    for plugin in made:
        plugin.close()


def batch(**columns: Any) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


def load(
    make: Callable[..., Any], db: Db, batches: list[pa.RecordBatch], *, commit: bool = True, **config: Any
) -> Any:
    """Open a destination, write the batches, commit (or abort) and close it."""
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, **config)
    destination.open()
    try:
        for b in batches:
            assert destination.write(b) is None
        if commit:
            destination.commit()
        else:
            destination.abort()
    finally:
        destination.close()
    return destination


def leftovers(db: Db) -> set[str]:
    return {t for t in db.tables() if "__fp_" in t}


# ---------------------------------------------------------------------------
# Destination: modes
# ---------------------------------------------------------------------------


def test_append_twice_appends(make: Any, db: Db) -> None:
    table = db.name()
    first = [batch(id=[1, 2], name=["a", "b"]), batch(id=[3], name=["c"])]
    load(make, db, first, table=table, mode="append")
    load(make, db, [batch(id=[4], name=["d"])], table=table, mode="append")
    assert [tuple(r) for r in db.rows(table)] == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    load(make, db, first, table=table, mode="append")
    assert len(db.rows(table)) == 7
    assert not leftovers(db)


def test_replace_replaces_rows_and_keeps_the_definition(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20), score DECIMAL(6,2))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old', 1.50), (2, 'older', 2.25)")
    types_before = db.column_types(table)
    load(
        make,
        db,
        [batch(id=[7, 8], name=["new", "newer"]), batch(id=[9], name=["newest"])],
        table=table,
        mode="replace",
    )
    assert db.rows(table) == [(7, "new", None), (8, "newer", None), (9, "newest", None)]
    assert db.column_types(table) == types_before
    assert not leftovers(db)
    # A run without records leaves the table empty (its definition still kept).
    load(make, db, [], table=table, mode="replace")
    assert db.rows(table) == [] and db.column_types(table) == types_before
    assert not leftovers(db)
    # A table that does not exist yet is created by a replace too, with a unique key on the keys.
    fresh = db.name()
    load(make, db, [batch(id=[1], name=["x"])], table=fresh, mode="replace", keys=["id"])
    assert db.rows(fresh) == [(1, "x")]
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own IntegrityError
        db.run(f"INSERT INTO {db.quote(fresh)} VALUES (1, 'duplicate')")


def test_upsert_updates_existing_keys_and_inserts_new_ones(make: Any, db: Db) -> None:
    table = db.name()
    load(make, db, [batch(id=[1, 2, 3], name=["a", "b", "c"])], table=table, mode="upsert", keys=["id"])
    load(
        make,
        db,
        # id 2 comes twice in one run: the last one wins.
        [batch(id=[2, 4], name=["B", "d"]), batch(id=[2, 5], name=["BB", "e"])],
        table=table,
        mode="upsert",
        keys=["id"],
    )
    assert db.rows(table) == [(1, "a"), (2, "BB"), (3, "c"), (4, "d"), (5, "e")]
    assert not leftovers(db)


def test_upsert_without_a_unique_key_falls_back_to_update_and_insert(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, region VARCHAR(10), total INTEGER)")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'eu', 10), (1, 'us', 20), (2, 'eu', 30)")
    load(
        make,
        db,
        [batch(id=[1, 3], region=["us", "eu"], total=[21, 40])],
        table=table,
        mode="upsert",
        keys=["id", "region"],
    )
    rows = db.run(f"SELECT id, region, total FROM {db.quote(table)} ORDER BY id, region")
    assert rows == [(1, "eu", 10), (1, "us", 21), (2, "eu", 30), (3, "eu", 40)]


def test_upsert_needs_keys() -> None:
    with pytest.raises(ValueError, match="upsert' needs keys"):
        SqlTableDestination.config_model(connection="c", table="t", mode="upsert")


# ---------------------------------------------------------------------------
# Destination: atomicity
# ---------------------------------------------------------------------------


def test_a_failed_replace_leaves_the_target_exactly_as_it_was(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20), score DECIMAL(6,2))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old', 1.50), (2, 'older', 2.25)")
    before_rows, before_types = db.rows(table), db.column_types(table)
    load(
        make,
        db,
        [batch(id=[7, 8], name=["new", "newer"]), batch(id=[9], name=["newest"])],
        commit=False,
        table=table,
        mode="replace",
    )
    assert db.rows(table) == before_rows
    assert db.column_types(table) == before_types
    assert not leftovers(db)


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_failed_append_or_upsert_adds_nothing(make: Any, db: Db, mode: str) -> None:
    table = db.name()
    load(make, db, [batch(id=[1], name=["a"])], table=table, mode="upsert", keys=["id"])
    # (Appending id 1 again would be an error record now: the created table has a unique key on id.)
    data = batch(id=[1, 2], name=["A", "b"]) if mode == "upsert" else batch(id=[2, 3], name=["b", "c"])
    load(make, db, [data], commit=False, table=table, mode=mode, keys=["id"])
    assert db.rows(table) == [(1, "a")]
    assert not leftovers(db)


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_readers_see_the_old_table_until_commit(make: Any, db: Db, mode: str) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, name VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode=mode)
    destination.open()
    destination.write(batch(id=[2, 3], name=["new", "newer"]))
    destination.write(batch(id=[4], name=["newest"]))
    assert db.rows(table) == [(1, "old")]  # the side connection is another session
    destination.commit()
    destination.close()
    expected = [(2, "new"), (3, "newer"), (4, "newest")]
    assert db.rows(table) == (expected if mode == "replace" else [(1, "old"), *expected])


def test_a_record_the_database_rejects_fails_the_stage_and_nothing_is_written(make: Any, db: Db) -> None:
    table = db.name()
    # NOT NULL and key violations are error records (test_sql_dependents.py); a CHECK is the database's.
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER CHECK (id > 0), name VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="append")
    destination.open()
    with pytest.raises(StageError) as failure:
        destination.write(batch(id=[2, -1], name=["ok", "negative"]))
        destination.commit()  # the check runs when the rows move to the target
    destination.abort()
    assert "SQL_01" in failure.value.message
    assert db.rows(table) == [(1, "old")]
    assert not leftovers(db)


def test_a_missing_table_without_create_table_fails_at_open(make: Any, db: Db) -> None:
    destination = make(
        SqlTableDestination, db.lookup, connection=db.spec.name, table=db.name("missing"), create_table=False
    )
    with pytest.raises(StageError, match="does not exist and create_table is off"):
        destination.open()


def test_incoming_columns_must_exist_in_the_target(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER)")
    with pytest.raises(StageError, match="'surprise' is not a column"):
        load(make, db, [batch(id=[1], surprise=["x"])], table=table)
    assert not leftovers(db)


# ---------------------------------------------------------------------------
# Destination: types and names
# ---------------------------------------------------------------------------


def test_created_tables_use_the_field_mapper_types(make: Any, db: Db) -> None:
    mapper = make(
        FieldMapper,
        Lookup(),
        fields=[
            {"source": "id", "type": "integer"},
            {"source": "amount", "type": "numeric(10,2)"},
            {"source": "label", "type": "character varying(100)"},
            {"source": "at", "type": "timestamp with time zone"},
        ],
    )
    mapper.open()
    raw = batch(id=["1", "2"], amount=["12.34", "5"], label=["x", "y"], at=["2024-05-01 10:00:00+00", None])
    mapped = mapper.process(raw).records
    assert mapped.schema.field("amount").metadata[SQL_TYPE_METADATA_KEY] == b"numeric(10,2)"
    table = db.name()
    load(make, db, mapped.to_batches(), table=table)
    types = {k.lower(): v.lower() for k, v in db.column_types(table).items()}
    expected = {
        "postgresql": {
            "id": "integer",
            "amount": "numeric(10,2)",
            "label": "character varying(100)",
            "at": "timestamp with time zone",
        },
        "mysql": {"id": "int(11)", "amount": "decimal(10,2)", "label": "varchar(100)", "at": "datetime(6)"},
        "sqlite": {
            "id": "integer",
            "amount": "numeric(10,2)",
            "label": "varchar(100)",
            "at": "timestamp with time zone",
        },
        "duckdb": {
            "id": "integer",
            "amount": "decimal(10,2)",
            "label": "varchar",
            "at": "timestamp with time zone",
        },
    }[db.vendor]
    assert types == expected
    amounts = [r[0] for r in db.run(f"SELECT amount FROM {db.quote(table)} ORDER BY id")]
    assert [decimal.Decimal(str(a)) for a in amounts] == [decimal.Decimal("12.34"), decimal.Decimal("5")]
    if db.vendor == "postgresql":
        scale = db.run(
            "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = 'amount'",
            (table,),
        )
        assert scale == [(10, 2)]


def test_values_of_every_common_type_round_trip(make: Any, db: Db) -> None:
    table = db.name()
    data = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2], pa.int64()),
            "flag": pa.array([True, None], pa.bool_()),
            "ratio": pa.array([0.5, None], pa.float64()),
            "price": pa.array([decimal.Decimal("10.25"), None], pa.decimal128(8, 2)),
            "day": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None], pa.timestamp("us")),
            "text": pa.array(["quote ' \" ` \\ , ; newline\nend", ""], pa.string()),
            "word": pa.array(["NULL", None], pa.string()),
            "zoned": pa.array(
                [dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC), None], pa.timestamp("us", "UTC")
            ),
            "blob": pa.array([b"\x00\xff'\"", None], pa.binary()),
            "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
        }
    )
    load(make, db, [data], table=table)
    # The table origin (SQLite: the declared column types tell it how to read the stored text).
    origin = make(SqlTableOrigin, db.lookup, connection=db.spec.name, table=table, offset_column="id")
    origin.open()
    got = pa.Table.from_batches(list(origin.batches())).to_pylist()
    assert [r["text"] for r in got] == ["quote ' \" ` \\ , ; newline\nend", ""]
    assert [r["word"] for r in got] == ["NULL", None]  # the text NULL is not a NULL
    assert [bool(r["flag"]) if r["flag"] is not None else None for r in got] == [True, None]
    assert [r["ratio"] for r in got] == [0.5, None]
    assert [None if r["price"] is None else decimal.Decimal(str(r["price"])) for r in got] == [
        decimal.Decimal("10.25"),
        None,
    ]
    assert [r["day"] for r in got] == [dt.date(2024, 2, 29), None]
    assert [r["at"] for r in got] == [dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None]
    zoned = got[0]["zoned"]
    assert zoned.replace(tzinfo=None) == dt.datetime(2024, 6, 1, 12, 0) and got[1]["zoned"] is None
    assert [r["blob"] for r in got] == [b"\x00\xff'\"", None]
    tags = got[0]["tags"]
    assert (json.loads(tags) if isinstance(tags, str) else tags) == ["a", "b"] and got[1]["tags"] is None


HOSTILE = ['x"; DROP TABLE victims; --', "x`; DROP TABLE victims; --", "we'ird % :name $1$ ?"]


@pytest.mark.parametrize("mode", ["append", "replace", "upsert"])
def test_hostile_table_names_are_taken_literally(make: Any, db: Db, mode: str) -> None:
    victims = db.name("victims")
    db.run(f"CREATE TABLE {db.quote(victims)} (id INTEGER)")
    db.run(f"INSERT INTO {db.quote(victims)} VALUES (42)")
    keys = ["id"] if mode == "upsert" else []
    for hostile in HOSTILE:
        name = hostile.replace("victims", victims)
        for _ in range(2):
            # Column names are quoted the same way.
            data = batch(**{"id": [1, 2], 'na"me`; DROP TABLE victims; --': ["a", "b"]})
            load(make, db, [data], table=name, mode=mode, keys=keys)
        assert name in db.tables()
        expected = 4 if mode == "append" else 2
        assert len(db.rows(name)) == expected
        query = make(SqlTableOrigin, db.lookup, connection=db.spec.name, table=name, offset_column="id")
        query.open()
        assert sum(b.num_rows for b in query.batches()) == expected
    assert db.rows(victims) == [(42,)]
    assert not leftovers(db)


def test_names_a_database_cannot_hold_are_refused(make: Any, db: Db) -> None:
    with pytest.raises(ValueError, match="NUL"):
        SqlTableDestination.config_model(connection="c", table="bad\x00name")
    with pytest.raises(ValueError, match="dots"):
        SqlTableDestination.config_model(connection="c", table="a.b.c")
    if db.vendor in ("postgresql", "mysql"):
        destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table="x" * 65)
        with pytest.raises(StageError, match="at most"):
            destination.open()


def test_schema_qualified_tables(make: Any, db: Db) -> None:
    if db.vendor == "sqlite":
        schema = "main"
    elif db.vendor == "mysql":
        schema = db.spec.database or ""
    else:
        schema = db.name("schema")
        db.run(f"CREATE SCHEMA {db.quote(schema)}")
    table = db.name()
    load(make, db, [batch(id=[1], name=["a"])], table=f"{schema}.{table}", mode="replace")
    load(make, db, [batch(id=[2], name=["b"])], table=f"{schema}.{table}", mode="replace")
    rows = db.run(f"SELECT id, name FROM {db.quote(schema)}.{db.quote(table)}")
    assert rows == [(2, "b")]


# ---------------------------------------------------------------------------
# Origins
# ---------------------------------------------------------------------------


def _numbers(db: Db, rows: int = 10_000) -> str:
    table = db.name("numbers")
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, name VARCHAR(20), day DATE)")
    values = ", ".join(f"({i}, 'n{i}', '2024-01-{1 + i % 28:02d}')" for i in range(1, rows + 1))
    db.run(f"INSERT INTO {db.quote(table)} VALUES {values}")
    return table


def test_query_origin_streams_in_batches(make: Any, db: Db) -> None:
    table = _numbers(db)
    origin = make(
        SqlQueryOrigin,
        db.lookup,
        context={"batch_size": 1000},
        connection=db.spec.name,
        query=f"SELECT id, name FROM {db.quote(table)}",
    )
    origin.open()
    batches = list(origin.batches())
    assert len(batches) >= 10
    assert all(b.num_rows <= 1000 for b in batches)
    assert sum(b.num_rows for b in batches) == 10_000
    assert sorted(pa.Table.from_batches(batches).column("id").to_pylist()) == list(range(1, 10_001))


def test_query_origin_binds_parameters(make: Any, db: Db) -> None:
    table = _numbers(db, 100)
    victims = db.name("victims")
    db.run(f"CREATE TABLE {db.quote(victims)} (id INTEGER)")
    query = (
        f"SELECT id, name FROM {db.quote(table)} WHERE id > :low AND day >= :since AND name <> :bad "
        "ORDER BY id -- :not_a_parameter"
    )
    origin = make(
        SqlQueryOrigin,
        db.lookup,
        connection=db.spec.name,
        query=query,
        parameters={"low": "90", "since": "2024-01-10", "bad": f"'; DROP TABLE {victims}; --"},
    )
    origin.open()
    ids = pa.Table.from_batches(list(origin.batches())).column("id").to_pylist()
    expected = [i for i in range(91, 101) if 1 + i % 28 >= 10]
    assert [int(i) for i in ids] == expected
    assert victims in db.tables()


def test_query_origin_takes_trailing_semicolons_and_comments(make: Any, db: Db) -> None:
    table = _numbers(db, 30)
    origin = make(
        SqlQueryOrigin,
        db.lookup,
        connection=db.spec.name,
        query=f"SELECT id FROM {db.quote(table)} WHERE id <= 3 ; -- the first three",
    )
    origin.open()
    assert sorted(int(i) for b in origin.batches() for i in b.column("id").to_pylist()) == [1, 2, 3]


def test_query_origin_parameters_must_match_the_query() -> None:
    with pytest.raises(ValueError, match="no parameter 'low'"):
        SqlQueryOrigin.config_model(connection="c", query="SELECT 1 WHERE 2 > :low", parameters={"x": 1})
    with pytest.raises(ValueError, match="not used"):
        SqlQueryOrigin.config_model(connection="c", query="SELECT 1", parameters={"x": 1})


def test_query_origin_honours_the_record_limit(make: Any, db: Db) -> None:
    table = _numbers(db, 5000)
    origin = make(
        SqlQueryOrigin,
        db.lookup,
        context={"batch_size": 300, "record_limit": 700, "preview": True},
        connection=db.spec.name,
        query=f"SELECT * FROM {db.quote(table)}",
    )
    origin.open()
    assert sum(b.num_rows for b in origin.batches()) == 700


def test_query_origin_reports_a_bad_query(make: Any, db: Db) -> None:
    origin = make(
        SqlQueryOrigin, db.lookup, connection=db.spec.name, query="SELECT * FROM no_such_table_at_all"
    )
    origin.open()
    with pytest.raises(StageError, match="the query failed"):
        list(origin.batches())


def test_table_origin_incremental_offset_reads_only_new_rows(make: Any, db: Db, tmp_path: Path) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, name VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (3, 'c'), (1, 'a'), (2, 'b'), (NULL, 'no offset')")
    state = MemoryStageState()

    def read(**context: Any) -> list[dict[str, Any]]:
        origin = make(
            SqlTableOrigin,
            db.lookup,
            context={"resources": {"connections": db.lookup}, "state_store": state, **context},
            connection=db.spec.name,
            table=table,
            columns=["name"],
            offset_column="id",
        )
        origin.open()
        rows = [r for b in origin.batches() for r in b.to_pylist()]
        origin.close()
        return rows

    assert read() == [{"name": "a"}, {"name": "b"}, {"name": "c"}]  # ordered by the offset; id not output
    saved = state.load("SQL_01")
    assert saved is not None and saved["offset"] == {"type": "int", "value": 3} and saved["table"] == table
    db.run(f"INSERT INTO {db.quote(table)} VALUES (5, 'e'), (4, 'd')")
    # A preview and a cancelled run do not move the offset.
    assert read(preview=True, record_limit=1) == [{"name": "d"}]
    assert read() == [{"name": "d"}, {"name": "e"}]
    assert read() == []
    assert (state.load("SQL_01") or {})["offset"]["value"] == 5


def test_table_origin_initial_offset_and_timestamps(make: Any, db: Db, tmp_path: Path) -> None:
    table = db.name()
    column_type = {
        "postgresql": "TIMESTAMP",
        "mysql": "DATETIME(6)",
        "sqlite": "TIMESTAMP",
        "duckdb": "TIMESTAMP",
    }
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, happened {column_type[db.vendor]})")
    db.run(
        f"INSERT INTO {db.quote(table)} VALUES (1, '2024-01-01 00:00:00'), (2, '2024-01-02 00:00:00'), "
        "(3, '2024-01-03 12:30:00')"
    )

    store = MemoryStageState()

    def read() -> list[int]:
        origin = make(
            SqlTableOrigin,
            db.lookup,
            context={"resources": {"connections": db.lookup}, "state_store": store},
            connection=db.spec.name,
            table=table,
            offset_column="happened",
            initial_offset="2024-01-01 12:00:00",
        )
        origin.open()
        ids = [int(i) for b in origin.batches() for i in b.column("id").to_pylist()]
        origin.close()
        return ids

    assert read() == [2, 3]
    state = store.load("SQL_01")
    assert state is not None and state["offset"]["type"] == "timestamp"
    db.run(f"INSERT INTO {db.quote(table)} VALUES (4, '2024-01-04 00:00:00')")
    assert read() == [4]


# ---------------------------------------------------------------------------
# Executor
# ---------------------------------------------------------------------------


def test_executor_runs_statements_in_one_transaction(make: Any, db: Db) -> None:
    table = db.name()
    executor = make(
        SqlExecutor,
        db.lookup,
        connection=db.spec.name,
        statements=[
            f"CREATE TABLE {db.quote(table)} (id INTEGER)",
            f"INSERT INTO {db.quote(table)} VALUES (1)",
        ],
    )
    executor.open()
    executor.execute()
    assert db.rows(table) == [(1,)]
    failing = make(
        SqlExecutor,
        db.lookup,
        connection=db.spec.name,
        statements=[
            f"INSERT INTO {db.quote(table)} VALUES (2)",
            "INSERT INTO no_such_table_at_all VALUES (3)",
        ],
    )
    failing.open()
    with pytest.raises(StageError, match="statement 2"):
        failing.execute()
    assert db.rows(table) == [(1,)]  # the first statement was rolled back with the second


def test_executor_without_transaction_keeps_earlier_statements(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER)")
    executor = make(
        SqlExecutor,
        db.lookup,
        connection=db.spec.name,
        transaction=False,
        statements=[
            f"INSERT INTO {db.quote(table)} VALUES (2)",
            "INSERT INTO no_such_table_at_all VALUES (3)",
        ],
    )
    executor.open()
    with pytest.raises(StageError):
        executor.execute()
    assert db.rows(table) == [(2,)]


# ---------------------------------------------------------------------------
# Secrets, Redshift and PostgreSQL specifics
# ---------------------------------------------------------------------------


def test_driver_messages_are_scrubbed_of_secrets(make: Any, db: Db) -> None:
    secret = "s3cr3tPa55"
    spec = db.spec.model_copy(update={"secrets": {"token": SecretStr(secret)}, "name": "with-secret"})
    origin = make(
        SqlQueryOrigin, Lookup(spec), connection="with-secret", query=f"SELECT * FROM {secret}_table"
    )
    origin.open()
    with pytest.raises(StageError) as failure:
        list(origin.batches())
    assert secret not in failure.value.message and "***" in failure.value.message


def test_unknown_connections_fail_with_a_clear_message(make: Any, db: Db) -> None:
    origin = make(SqlQueryOrigin, db.lookup, connection="nope", query="SELECT 1")
    with pytest.raises(StageError, match="Connection 'nope' does not exist"):
        origin.open()


@pytest.fixture
def redshift(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """The Redshift code path (psycopg, multi-row INSERT, no ON CONFLICT) against PostgreSQL."""
    handle = _open_db("redshift", tmp_path, request)
    yield handle
    handle.raw.close()


def test_redshift_path_loads_every_mode(make: Any, redshift: Db) -> None:
    db = redshift
    assert db.spec.vendor == "redshift"
    table = db.name()
    load(make, db, [batch(id=[1, 2], name=["a", "b"])], table=table, mode="append")
    load(make, db, [batch(id=[3], name=["c"])], table=table, mode="append")
    assert db.rows(table) == [(1, "a"), (2, "b"), (3, "c")]
    load(make, db, [batch(id=[2, 4, 4], name=["B", "x", "d"])], table=table, mode="upsert", keys=["id"])
    assert db.rows(table) == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    load(make, db, [batch(id=[9], name=["z"])], commit=False, table=table, mode="replace")
    assert len(db.rows(table)) == 4
    load(make, db, [batch(id=[9], name=["z"])], table=table, mode="replace")
    assert db.rows(table) == [(9, "z")]
    origin = make(
        SqlQueryOrigin,
        db.lookup,
        connection=db.spec.name,
        query=f"SELECT * FROM {db.quote(table)} WHERE id > :low",
        parameters={"low": "1"},
    )
    origin.open()
    assert pa.Table.from_batches(list(origin.batches())).to_pylist() == [{"id": 9, "name": "z"}]
    assert not leftovers(db)


def test_postgres_loads_text_into_json_and_uuid_columns(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _open_db("postgresql", tmp_path, request)
    try:
        table = db.name()
        db.run(f"CREATE TABLE {db.quote(table)} (id integer PRIMARY KEY, doc jsonb, ref uuid, n numeric)")
        ref = str(uuid.uuid4())
        data = batch(id=[1], doc=['{"a": [1, 2]}'], ref=[ref], n=["12345678901234567890.123456789"])
        for mode in ("replace", "upsert", "replace"):
            load(make, db, [data], table=table, mode=mode, keys=["id"])
        load(make, db, [batch(id=[2], doc=["[]"], ref=[None], n=["1"])], table=table, mode="append")
        assert db.run(f"SELECT id, doc, ref::text, n::text FROM {db.quote(table)} ORDER BY id") == [
            (1, {"a": [1, 2]}, ref, "12345678901234567890.123456789"),
            (2, [], None, "1"),
        ]
        # The replaced table's primary key has its usual name again.
        assert db.run("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s)", (table,)) == [
            (f"{table}_pkey",)
        ]
        origin = make(SqlTableOrigin, db.lookup, connection=db.spec.name, table=table)
        origin.open()
        row = pa.Table.from_batches(list(origin.batches())).slice(0, 1)
        assert row.to_pylist() == [
            {"id": 1, "doc": '{"a": [1, 2]}', "ref": ref, "n": "12345678901234567890.123456789"}
        ]
        # An unconstrained numeric travels as text but keeps its SQL type for the next SQL table.
        assert row.schema.field("n").metadata[SQL_TYPE_METADATA_KEY] == b"numeric"
        copy = db.name()
        load(make, db, row.to_batches(), table=copy)
        assert db.column_types(copy)["n"] == "numeric"
    finally:
        db.raw.close()


_STRAIGHT = "COPY straight into"


def test_postgres_append_copies_straight_into_the_table_in_its_transaction(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An append to an existing table COPYs into it (no raw table, no INSERT ... SELECT): readers see
    # nothing before the commit, an abort leaves the table as it was, a trigger fires per row as for
    # INSERT, and a column the load does not carry gets its default.
    db = _open_db("postgresql", tmp_path, request)
    try:
        table, log_table = db.name(), db.name()
        t, lt = db.quote(table), db.quote(log_table)
        db.run(
            f"CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL, total numeric(10,2), "
            "at timestamptz, added text DEFAULT 'by default')"
        )
        db.run(f"INSERT INTO {t} (id, name) VALUES (1, 'old')")
        db.run(f"CREATE TABLE {lt} (id integer)")
        db.run(
            f"CREATE FUNCTION {db.quote(table + '_f')}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN INSERT INTO {lt} VALUES (NEW.id); RETURN NEW; END $$"
        )
        db.run(
            f"CREATE TRIGGER {db.quote(table + '_t')} BEFORE INSERT ON {t} FOR EACH ROW "
            f"EXECUTE FUNCTION {db.quote(table + '_f')}()"
        )
        at = dt.datetime(2026, 12, 5, 12, 30, tzinfo=dt.UTC)
        data = pa.RecordBatch.from_pydict(
            {
                "id": pa.array([2, 3, 1], pa.int64()),
                "name": ["b", "c", "again"],
                "total": pa.array(
                    [decimal.Decimal("10.50"), None, decimal.Decimal("1.00")], pa.decimal128(10, 2)
                ),
                "at": pa.array([at, at, at], pa.timestamp("us", "UTC")),
            }
        )
        caplog.set_level(logging.DEBUG, logger="flowport.stages.sql")
        destination = make(
            SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="append"
        )
        destination.open()
        rejected = destination.write(data)
        # The key already in the table is an error record of the stage; the others are COPYed.
        assert rejected is not None and rejected.errors.records.column("id").to_pylist() == [1]
        assert db.rows(table) == [(1, "old", None, None, "by default")]
        destination.abort()
        destination.close()
        assert db.rows(table) == [(1, "old", None, None, "by default")]
        assert db.run(f"SELECT count(*) FROM {lt}") == [(0,)]
        load(make, db, [data.slice(0, 2)], table=table, mode="append")
        assert db.run(f"SELECT id, name, total::text, at = %s, added FROM {t} ORDER BY id", (at,)) == [
            (1, "old", None, None, "by default"),
            (2, "b", "10.50", True, "by default"),
            (3, "c", None, True, "by default"),
        ]
        assert db.run(f"SELECT id FROM {lt} ORDER BY id") == [(2,), (3,)]
        assert _STRAIGHT in caplog.text
        assert not leftovers(db)
    finally:
        db.raw.close()


@pytest.mark.parametrize("kind", ["insert rule", "row security", "identity always"])
def test_postgres_append_stays_an_insert_where_copy_would_store_something_else(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # COPY ignores rules, refuses row-level security, and writes the values it is given into an
    # identity column GENERATED ALWAYS: such a table gets the INSERT it always got.
    db = _open_db("postgresql", tmp_path, request)
    try:
        table, audit = db.name(), db.name()
        t = db.quote(table)
        identity = "GENERATED ALWAYS AS IDENTITY" if kind == "identity always" else ""
        db.run(f"CREATE TABLE {t} (id integer {identity}, name text)")
        db.run(f"CREATE TABLE {db.quote(audit)} (id integer)")
        if kind == "insert rule":
            db.run(
                f"CREATE RULE {db.quote(table + '_r')} AS ON INSERT TO {t} "
                f"DO ALSO INSERT INTO {db.quote(audit)} VALUES (NEW.id)"
            )
        if kind == "row security":
            db.run(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
        caplog.set_level(logging.DEBUG, logger="flowport.stages.sql")
        data = batch(id=[1, 2], name=["a", "b"])
        if kind == "identity always":
            with pytest.raises(StageError, match="non-DEFAULT value into column"):
                load(make, db, [data], table=table, mode="append")
            assert db.rows(table) == []
        else:
            load(make, db, [data], table=table, mode="append")
            assert db.rows(table) == [(1, "a"), (2, "b")]
        if kind == "insert rule":
            assert db.run(f"SELECT id FROM {db.quote(audit)} ORDER BY id") == [(1,), (2,)]
        assert _STRAIGHT not in caplog.text
        assert not leftovers(db)
    finally:
        db.raw.close()


def test_postgres_append_as_a_user_row_security_applies_to_keeps_its_policy(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # A connection's user whom a policy restricts: the append is an INSERT the policy checks (COPY
    # would be refused outright); a row the policy refuses fails the load and nothing is written.
    db = _open_db("postgresql", tmp_path, request)
    role = f"fp_rls_{db.prefix}"
    try:
        table = db.name()
        t = db.quote(table)
        db.run(f"CREATE ROLE {role} LOGIN")
        db.run(f"CREATE TABLE {t} (id integer, tenant text)")
        db.run(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
        db.run(f"CREATE POLICY {db.quote(table + '_p')} ON {t} USING (true) WITH CHECK (tenant = 'a')")
        db.run(f"GRANT SELECT, INSERT ON {t} TO {role}")
        db.spec = db.spec.model_copy(update={"name": "pg-rls", "username": role})
        load(make, db, [batch(id=[1, 2], tenant=["a", "a"])], table=table, mode="append")
        with pytest.raises(StageError, match="row-level security"):
            load(make, db, [batch(id=[3, 4], tenant=["a", "b"])], table=table, mode="append")
        assert db.rows(table) == [(1, "a"), (2, "a")]
    finally:
        db.run(f"DROP OWNED BY {role}")
        db.run(f"DROP ROLE IF EXISTS {role}")
        db.raw.close()


def test_postgres_micro_batches_look_their_keys_up_on_a_kept_connection(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An append into a keyed table asks the server which keys it holds, batch by batch; once its
    # COPY owns the load's connection it asks on a second one. In a streaming job (kept connections)
    # the next micro-batch takes both from the keeper: no new connection is made.
    from flowport.stages.sql.kept import KEPT_CONNECTIONS, KeptConnections
    from flowport.stages.sql.vendors.postgres.connection import PostgresConnection

    db = _open_db("postgresql", tmp_path, request)
    keeper = KeptConnections()
    opened: list[object] = []
    real_open = PostgresConnection.open.__func__  # type: ignore[attr-defined]

    def counting_open(cls: type[PostgresConnection], spec: ConnectionSpec) -> PostgresConnection:
        opened.append(spec)
        return real_open(cls, spec)  # type: ignore[no-any-return]

    monkeypatch.setattr(PostgresConnection, "open", classmethod(counting_open))
    try:
        table = db.name()
        db.run(f"CREATE TABLE {db.quote(table)} (id integer PRIMARY KEY, name text)")
        db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
        context = {"resources": {"connections": db.lookup, KEPT_CONNECTIONS: keeper}}
        rejected: list[list[int]] = []
        micro_batches = [
            (batch(id=[2], name=["b"]), batch(id=[1, 3], name=["x", "c"])),
            (batch(id=[4], name=["d"]), batch(id=[3, 5], name=["y", "e"])),
        ]
        for first, second in micro_batches:
            before = len(opened)
            destination = make(
                SqlTableDestination,
                db.lookup,
                context=context,
                connection=db.spec.name,
                table=table,
                mode="append",
            )
            destination.open()
            outputs = [destination.write(first), destination.write(second)]
            rejected.append([i for o in outputs if o for i in o.errors.records.column("id").to_pylist()])
            destination.commit()
            destination.close()
            opened_now = len(opened) - before
        # The first micro-batch opened the load's connection and the look-up's; the second none.
        assert opened_now == 0
        assert len(opened) == 2
        # A key the table already held is an error record, the second batch's found on the look-up
        # connection (3: loaded by the first micro-batch).
        assert rejected == [[1], [3]]
        assert db.rows(table) == [(1, "old"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    finally:
        keeper.close()
        db.raw.close()


# ---------------------------------------------------------------------------
# Through the engine
# ---------------------------------------------------------------------------


def _flow(stages: list[dict[str, Any]], edges: list[tuple[str, str]], queue_size: int = 4) -> Any:
    from flowport.model.document import flow_from_dict

    return flow_from_dict(
        {
            "format": "flowport.flow/1",
            "name": "copy table",
            "type": "batch",
            "configuration": {"batch_size": 500, "queue_size": queue_size},
            "stages": stages,
            "edges": [{"from": a, "to": b} for a, b in edges],
        }
    )


def _registry() -> Any:
    from flowport.plugins.registry import SYSTEM_ARTIFACT
    from flowport.services.flows import plugin_registry

    registry = plugin_registry()
    names = {p.info.name for p in registry.plugins}
    # The SQL entry points are declared in pyproject.toml; an environment installed
    # before they were added does not list them yet.
    for cls in (SqlQueryOrigin, SqlTableOrigin, SqlTableDestination, SqlExecutor):
        if cls.name not in names:
            registry.add(cls, artifact=SYSTEM_ARTIFACT, version="0.1.0", scope="SYSTEM")
    return registry


@pytest.mark.parametrize("vendor", ["postgresql", "mysql", "sqlite"])
def test_engine_run_copies_a_table_atomically(
    vendor: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from flowport.engine import FlowRun, RunContext

    db = _open_db(vendor, tmp_path, request)
    try:
        source, target, audit = db.name("source"), db.name("target"), db.name("audit")
        db.run(f"CREATE TABLE {db.quote(source)} (id INTEGER, name VARCHAR(20))")
        db.run(
            f"INSERT INTO {db.quote(source)} VALUES " + ", ".join(f"({i}, 'n{i}')" for i in range(1, 3001))
        )
        db.run(f"CREATE TABLE {db.quote(target)} (id INTEGER PRIMARY KEY, name VARCHAR(20))")
        db.run(f"INSERT INTO {db.quote(target)} VALUES (1, 'previous')")
        db.run(f"CREATE TABLE {db.quote(audit)} (loaded INTEGER)")
        before = (db.rows(target), db.column_types(target))
        origin = {
            "name": "Source_01",
            "plugin": {"name": "sql_table_origin", "type": "origin"},
            "configuration": {"connection": db.spec.name, "table": source, "offset_column": "id"},
        }
        destination = {
            "name": "Target_01",
            "plugin": {"name": "sql_table_destination", "type": "destination"},
            "configuration": {"connection": str(db.spec.uuid), "table": target, "mode": "replace"},
        }
        boom = {
            "name": "Boom_01",
            "plugin": {"name": "sql", "type": "processor"},
            "configuration": {
                "query": "SELECT * FROM input "
                "WHERE CASE WHEN id > 1500 THEN error('boom at ' || id) ELSE true END",
                "per_batch": True,
            },
        }
        executor = {
            "name": "Audit_01",
            "plugin": {"name": "sql_executor", "type": "executor"},
            "configuration": {
                "connection": db.spec.name,
                "statements": [f"INSERT INTO {db.quote(audit)} SELECT COUNT(*) FROM {db.quote(target)}"],
            },
        }
        registry = _registry()

        offsets = MemoryStageState()

        def run(flow: Any) -> Any:
            context = RunContext(resources={"connections": db.lookup}, base_dir=tmp_path, stage_state=offsets)
            return FlowRun(flow, registry, context).start().wait(timeout=120)

        # One batch between stages: the destination (which opens while the origin reads) must take
        # batches before the processor reaches the failing one, so the failure aborts a started load.
        failing = _flow(
            [origin, boom, destination, executor],
            [("Source_01", "Boom_01"), ("Boom_01", "Target_01"), ("Target_01", "Audit_01")],
            queue_size=1,
        )
        result = run(failing)
        assert result.status == "Failed" and "boom at" in (result.error or "")
        assert result.stages["Target_01"].input_records >= 500  # it had loaded batches before the failure
        assert (db.rows(target), db.column_types(target)) == before
        assert not leftovers(db)
        assert db.rows(audit, "loaded") == []  # executors run only after a commit
        assert offsets.load("Source_01") is None  # a failed run moves no offset

        passing = _flow(
            [origin, destination, executor], [("Source_01", "Target_01"), ("Target_01", "Audit_01")]
        )
        result = run(passing)
        assert result.status == "Complete", result.error
        rows = db.rows(target)
        assert len(rows) == 3000 and rows[0] == (1, "n1") and rows[-1] == (3000, "n3000")
        assert db.column_types(target) == before[1]
        assert db.rows(audit, "loaded") == [(3000,)]
        assert not leftovers(db)
        state = offsets.load("Source_01")
        assert state is not None and state["offset"]["value"] == 3000
    finally:
        db.raw.close()


def test_mariadb_falls_back_to_multi_row_inserts_when_load_data_is_refused(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymysql

    from flowport.stages.sql.vendors.mariadb import MariaDbLoad

    def refused(self: Any, data: pa.Table) -> None:
        raise pymysql.err.OperationalError(3948, "Loading local data is disabled")

    monkeypatch.setattr(MariaDbLoad, "_load_data", refused)
    db = _open_db("mysql", tmp_path, request)
    try:
        table = db.name()
        data = pa.RecordBatch.from_pydict(
            {
                "id": pa.array([1, 2], pa.int64()),
                "flag": pa.array([True, None]),
                "price": pa.array([decimal.Decimal("10.25"), None], pa.decimal128(8, 2)),
                "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None], pa.timestamp("us", "UTC")),
                "text": pa.array(["it's 100% \\ `x`", None]),
                "blob": pa.array([b"\x00\xff'", None]),
                "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
            }
        )
        load(make, db, [data], table=table, mode="upsert", keys=["id"])
        load(make, db, [data.slice(0, 1)], table=table, mode="upsert", keys=["id"])
        rows = db.rows(table)
        assert rows[0][:6] == (
            1,
            1,
            decimal.Decimal("10.25"),
            dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
            "it's 100% \\ `x`",
            b"\x00\xff'",
        )
        assert json.loads(rows[0][6]) == ["a", "b"]
        assert rows[1] == (2, None, None, None, None, None, None)
    finally:
        db.raw.close()
