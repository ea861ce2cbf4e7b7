"""Loads that keep what depends on the target, and the target's constraints, on real databases.

``replace`` must not break views, foreign keys or triggers on the target:
it swaps a staging table in by renaming only when nothing depends on the
target, and otherwise replaces the rows in place in one transaction. A
table the destination creates carries the constraints a Field Mapper
declared, and records violating a constraint are error records of the
destination while the other records load.

The databases and helpers are those of ``test_sql_stages.py`` (PostgreSQL
and MariaDB skip or fail as FLOWPORT_REQUIRE_SERVICES says).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.stages import test_sql_stages as sql_tests
from tests.stages.test_sql_stages import Db, Lookup, _flow, _open_db, _registry, batch, leftovers, load

from flowport.errors import StageError
from flowport.plugins.contract import ErrorBatch, StageOutput
from flowport.stages.processors.field_mapper import FieldMapper
from flowport.stages.sql._load import (
    DELETE_INSERT,
    DUPLICATE_KEY,
    MERGE,
    NOT_NULL_VIOLATION,
    RENAME_SWAP,
    TRUNCATE_INSERT,
)
from flowport.stages.sql.table_destination import SqlTableDestination

# The databases and the plugin factory of test_sql_stages.py (pytest finds fixtures by name).
pg_database = sql_tests.pg_database
maria_database = sql_tests.maria_database
db = sql_tests.db
make = sql_tests.make

LOGGER = "flowport.stages.sql"

# How each vendor publishes a replace when only a view depends on the target: PostgreSQL cannot
# drop a table a view depends on; MariaDB resolves views by name, so its atomic RENAME keeps them;
# SQLite and DuckDB always replace rows in place.
VIEW_STRATEGY = {
    "postgresql": TRUNCATE_INSERT,
    "mysql": RENAME_SWAP,
    "sqlite": DELETE_INSERT,
    "duckdb": DELETE_INSERT,
}


def checksum(rows: list[tuple[Any, ...]]) -> str:
    """A digest of the rows in order (what a reader would compare before and after)."""
    return hashlib.sha256(repr([tuple(str(v) for v in r) for r in rows]).encode()).hexdigest()


def strategies(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The strategies the loads logged, in order."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == LOGGER and "replacing the rows of" in message:
            found.append(message.split(" by ", 1)[1].split(";", 1)[0])
    return found


def view_exists(db: Db, view: str) -> bool:
    if db.vendor == "postgresql":
        return bool(db.run("SELECT 1 FROM pg_views WHERE viewname = %s", (view,)))
    if db.vendor == "mysql":
        return bool(
            db.run(
                "SELECT 1 FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (view,),
            )
        )
    if db.vendor == "sqlite":
        return bool(db.run("SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = ?", (view,)))
    return bool(db.run("SELECT 1 FROM duckdb_views() WHERE view_name = ?", (view,)))


def write_all(destination: Any, batches: list[pa.RecordBatch]) -> list[ErrorBatch]:
    """Write every batch, returning the error batches the destination handed back."""
    errors = []
    for b in batches:
        out = destination.write(b)
        if out is not None:
            assert isinstance(out, StageOutput) and out.records is None and out.errors is not None
            errors.append(out.errors)
    return errors


def error_rows(errors: list[ErrorBatch]) -> list[dict[str, Any]]:
    rows = []
    for e in errors:
        for record, code, message in zip(
            e.records.to_pylist(), e.codes.to_pylist(), e.messages.to_pylist(), strict=True
        ):
            rows.append({**record, "code": code, "message": message})
    return rows


# ---------------------------------------------------------------------------
# replace keeps dependents
# ---------------------------------------------------------------------------


def test_replace_keeps_a_dependent_view_and_the_view_shows_each_reload(
    make: Any, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    table, view = db.name("orders"), db.name("v")
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old'), (2, 'older')")
    db.run(f"CREATE VIEW {db.quote(view)} AS SELECT id, name FROM {db.quote(table)} WHERE id < 100")
    types = db.column_types(table)
    reloads = [
        [batch(id=[3, 4], name=["new", "newer"]), batch(id=[100], name=["hidden by the view"])],
        [batch(id=[1, 5], name=["again", "latest"])],
    ]
    caplog.set_level(logging.INFO, logger=LOGGER)
    for data in reloads:
        destination = make(
            SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="replace"
        )
        destination.open()
        before = db.rows(view)
        assert write_all(destination, data) == []
        assert db.rows(view) == before  # readers see the old rows until the commit
        destination.commit()
        destination.close()
        expected = sorted(
            (i, n) for b in data for i, n in zip(b["id"].to_pylist(), b["name"].to_pylist(), strict=True)
        )
        assert [tuple(r) for r in db.rows(table)] == expected
        assert [tuple(r) for r in db.rows(view)] == [r for r in expected if r[0] < 100]
        assert view_exists(db, view)
        assert db.column_types(table) == types
        assert not leftovers(db)
    assert strategies(caplog) == [VIEW_STRATEGY[db.vendor]] * 2


def test_replace_without_dependents_still_swaps(make: Any, db: Db, caplog: pytest.LogCaptureFixture) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
    caplog.set_level(logging.INFO, logger=LOGGER)
    load(make, db, [batch(id=[2], name=["new"])], table=table, mode="replace")
    assert db.rows(table) == [(2, "new")]
    swaps = db.vendor in ("postgresql", "mysql")
    assert strategies(caplog) == [RENAME_SWAP if swaps else DELETE_INSERT]


def _child(db: Db, parent: str, rows: str, *, cascade: bool = False) -> str:
    child = db.name("child")
    action = " ON DELETE CASCADE" if cascade else ""
    db.run(
        f"CREATE TABLE {db.quote(child)} (cid INTEGER PRIMARY KEY, pid INTEGER, "
        f"FOREIGN KEY (pid) REFERENCES {db.quote(parent)} (id){action})"
    )
    db.run(f"INSERT INTO {db.quote(child)} VALUES {rows}")
    return child


def _references(db: Db, child: str) -> list[str]:
    """The tables the child's foreign keys reference (the FK must still point at the parent)."""
    if db.vendor == "postgresql":
        rows = db.run(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "AND contype = 'f'",
            (db.quote(child),),
        )
        return [str(r[0]).strip('"') for r in rows]
    if db.vendor == "mysql":
        rows = db.run(
            "SELECT REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (child,),
        )
        return [str(r[0]) for r in rows]
    if db.vendor == "sqlite":
        return [str(r[2]) for r in db.run(f"PRAGMA foreign_key_list({db.quote(child)})")]
    rows = db.run(
        "SELECT referenced_table FROM duckdb_constraints() WHERE table_name = ? "
        "AND constraint_type = 'FOREIGN KEY'",
        (child,),
    )
    return [str(r[0]) for r in rows]


def test_replace_keeps_foreign_keys_that_reference_the_target(
    make: Any, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    parent = db.name("parent")
    db.run(f"CREATE TABLE {db.quote(parent)} (id INTEGER PRIMARY KEY, name VARCHAR(20), note VARCHAR(20))")
    db.run(f"INSERT INTO {db.quote(parent)} VALUES (1, 'one', 'old'), (2, 'two', 'old'), (3, 'x', 'old')")
    plain = _child(db, parent, "(10, 1)")
    # With ON DELETE CASCADE, deleting every row and inserting it again would empty this one.
    cascading = _child(db, parent, "(10, 1), (20, 2)", cascade=True) if db.vendor != "duckdb" else None
    children = [c for c in (plain, cascading) if c is not None]
    before_children = {c: db.rows(c, "cid") for c in children}
    caplog.set_level(logging.INFO, logger=LOGGER)

    load(make, db, [batch(id=[1, 2, 4], name=["ONE", "TWO", "four"])], table=parent, mode="replace")

    # Exactly the load's rows: the column it does not carry is back to its default.
    assert db.rows(parent) == [(1, "ONE", None), (2, "TWO", None), (4, "four", None)]
    assert {c: db.rows(c, "cid") for c in children} == before_children
    assert all(_references(db, c) == [parent] for c in children)
    assert not leftovers(db)
    # SQLite enforces foreign keys only on connections that ask (Flowport's do not): no merge needed.
    expected = DELETE_INSERT if db.vendor == "sqlite" else f"{MERGE} (id)"
    assert strategies(caplog) == [expected]
    if db.vendor == "sqlite":
        return

    # A key that leaves the load goes, with what its foreign keys say (the cascade), and only that.
    load(make, db, [batch(id=[1, 4], name=["uno", "cuatro"])], table=parent, mode="replace")
    assert db.rows(parent) == [(1, "uno", None), (4, "cuatro", None)]
    if cascading is not None:
        assert db.rows(cascading, "cid") == [(10, 1)]
    # Leaving out a key a plain foreign key references: the database refuses, and nothing changes.
    before = db.rows(parent)
    with pytest.raises(StageError):
        load(make, db, [batch(id=[4], name=["four"])], table=parent, mode="replace")
    assert db.rows(parent) == before
    assert db.rows(plain, "cid") == [(10, 1)]
    assert not leftovers(db)


def test_replace_keeps_foreign_keys_and_triggers_of_the_target_on_mariadb(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _open_db("mysql", tmp_path, request)
    try:
        parent, table, audit = db.name("parent"), db.name("t"), db.name("audit")
        db.run(f"CREATE TABLE {db.quote(parent)} (id INTEGER PRIMARY KEY)")
        db.run(f"INSERT INTO {db.quote(parent)} VALUES (1), (2)")
        db.run(f"CREATE TABLE {db.quote(audit)} (id INTEGER)")
        db.run(
            f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, pid INTEGER, "
            f"FOREIGN KEY (pid) REFERENCES {db.quote(parent)} (id))"
        )
        db.run(
            f"CREATE TRIGGER {db.quote(db.name('trg'))} AFTER INSERT ON {db.quote(table)} "
            f"FOR EACH ROW INSERT INTO {db.quote(audit)} VALUES (NEW.id)"
        )
        caplog.set_level(logging.INFO, logger=LOGGER)
        load(make, db, [batch(id=[7, 8], pid=[1, 2])], table=table, mode="replace")
        assert db.rows(table) == [(7, 1), (8, 2)]
        assert db.rows(audit) == [(7,), (8,)]  # the trigger is still on the table
        assert db.run(
            "SELECT REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (table,),
        ) == [(parent,)]
        assert strategies(caplog) == [DELETE_INSERT]
        # The foreign key is still enforced on the loaded rows.
        with pytest.raises(StageError, match="foreign key"):
            load(make, db, [batch(id=[9], pid=[3])], table=table, mode="replace")
        assert db.rows(table) == [(7, 1), (8, 2)]
        assert not leftovers(db)
    finally:
        db.raw.close()


def test_replace_keeps_grants_and_serial_columns_on_postgresql(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _open_db("postgresql", tmp_path, request)
    try:
        table = db.name()
        db.run(f"CREATE TABLE {db.quote(table)} (id serial PRIMARY KEY, name text)")
        db.run(f"INSERT INTO {db.quote(table)} (name) VALUES ('old')")
        db.run(f"GRANT SELECT ON {db.quote(table)} TO PUBLIC")
        caplog.set_level(logging.INFO, logger=LOGGER)
        load(make, db, [batch(name=["a", "b"])], table=table, mode="replace")
        assert db.rows(table) == [(2, "a"), (3, "b")]  # the sequence goes on
        acl = db.run("SELECT relacl::text FROM pg_class WHERE oid = to_regclass(%s)", (db.quote(table),))
        assert "=r/" in acl[0][0]  # PUBLIC's SELECT is still granted
        assert strategies(caplog) == [TRUNCATE_INSERT]
    finally:
        db.raw.close()


def test_a_failed_replace_in_place_leaves_the_target_and_its_view_unchanged(make: Any, db: Db) -> None:
    table, view = db.name("orders"), db.name("v")
    db.run(
        f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20), "
        "score INTEGER CHECK (score >= 0))"
    )
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old', 5), (2, 'older', 6)")
    db.run(f"CREATE VIEW {db.quote(view)} AS SELECT id, score FROM {db.quote(table)}")
    if db.vendor == "mysql":  # views do not stop a swap on MariaDB; a trigger does
        db.run(
            f"CREATE TRIGGER {db.quote(db.name('trg'))} BEFORE INSERT ON {db.quote(table)} "
            "FOR EACH ROW SET NEW.name = NEW.name"
        )
    before = (checksum(db.rows(table)), checksum(db.rows(view)), db.column_types(table))

    # A stage error after some rows: the load is aborted.
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="replace")
    destination.open()
    write_all(destination, [batch(id=[3, 4], name=["a", "b"], score=[1, 2])])
    destination.abort()
    destination.close()
    assert (checksum(db.rows(table)), checksum(db.rows(view)), db.column_types(table)) == before

    # The database refuses a row while it is moved into the target: the whole replace rolls back.
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="replace")
    destination.open()
    write_all(destination, [batch(id=[3, 4], name=["a", "b"], score=[1, 2]), batch(id=[5], score=[-1])])
    with pytest.raises(StageError):
        destination.commit()
    destination.abort()
    destination.close()
    assert (checksum(db.rows(table)), checksum(db.rows(view)), db.column_types(table)) == before
    assert view_exists(db, view)
    assert not leftovers(db)


# ---------------------------------------------------------------------------
# Constraints of a created target
# ---------------------------------------------------------------------------


def _mapped(make: Any, raw: pa.RecordBatch) -> pa.RecordBatch:
    """The seed's field_mapping, constraints included, through a Field Mapper."""
    mapper = make(
        FieldMapper,
        Lookup(),
        fields=[
            {"source": "reference", "target": "ref", "type": "character varying(100) PRIMARY KEY"},
            {"source": "company", "type": "character varying(255) NOT NULL"},
            {"source": "code", "type": "integer UNIQUE"},
            {"source": "status", "type": "text DEFAULT 'new'"},
        ],
    )
    mapper.open()
    out = mapper.process(raw)
    assert out.errors is None or out.errors.num_rows == 0
    records = out.records
    assert records is not None
    table = records if isinstance(records, pa.Table) else pa.Table.from_batches([records])
    return table.combine_chunks().to_batches()[0]


def _constraints(db: Db, table: str) -> tuple[dict[str, set[tuple[str, ...]]], set[str], dict[str, str]]:
    """({kind: {columns}}, NOT NULL columns, {column: default}) as the database's catalog reports them."""
    kinds: dict[str, set[tuple[str, ...]]] = {}
    if db.vendor == "sqlite":
        info = db.run(f"PRAGMA table_info({db.quote(table)})")
        not_null = {str(r[1]) for r in info if r[3]}
        defaults = {str(r[1]): str(r[4]) for r in info if r[4] is not None}
        primary = tuple(str(r[1]) for r in sorted(info, key=lambda r: r[5]) if r[5])
        if primary:
            kinds["PRIMARY KEY"] = {primary}
        for _, name, unique, origin, _ in db.run(f"PRAGMA index_list({db.quote(table)})"):
            if unique and origin != "pk":
                columns = tuple(str(r[2]) for r in db.run(f"PRAGMA index_info({db.quote(name)})"))
                kinds.setdefault("UNIQUE", set()).add(columns)
        return kinds, not_null, defaults
    p = "?" if db.vendor == "duckdb" else "%s"
    schema = {"postgresql": "current_schema()", "mysql": "DATABASE()", "duckdb": "current_schema()"}[
        db.vendor
    ]
    rows = db.run(
        "SELECT tc.constraint_type, tc.constraint_name, k.column_name "
        "FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage k "
        "ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema "
        "AND k.table_name = tc.table_name "
        f"WHERE tc.table_schema = {schema} AND tc.table_name = {p} "
        "AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') ORDER BY 1, 2, k.ordinal_position",
        (table,),
    )
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind, name, column in rows:
        grouped.setdefault((str(kind), str(name)), []).append(str(column))
    for (kind, _), columns in grouped.items():
        kinds.setdefault(kind, set()).add(tuple(columns))
    columns = db.run(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        f"WHERE table_schema = {schema} AND table_name = {p}",
        (table,),
    )
    not_null = {str(c) for c, nullable, _ in columns if nullable == "NO"}
    defaults = {str(c): str(d) for c, _, d in columns if d is not None}
    return kinds, not_null, defaults


def test_a_created_table_has_the_declared_constraints(make: Any, db: Db) -> None:
    table = db.name("omis")
    raw = batch(reference=["R1", "R2"], company=["Acme", "Globex"], code=["7", "8"], status=["open", None])
    load(make, db, [_mapped(make, raw)], table=table, mode="replace", keys=["ref"])
    kinds, not_null, defaults = _constraints(db, table)
    assert kinds == {"PRIMARY KEY": {("ref",)}, "UNIQUE": {("code",)}}  # keys=[ref] adds no second key
    assert {"ref", "company"} <= not_null and not {"code", "status"} & not_null
    assert "new" in defaults["status"]
    assert db.rows(table, "ref") == [("R1", "Acme", 7, "open"), ("R2", "Globex", 8, None)]
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own IntegrityError
        db.run(f"INSERT INTO {db.quote(table)} (ref, company) VALUES ('R3', NULL)")
    # A reload keeps them (the swap's staging table is made like the target).
    load(make, db, [_mapped(make, raw.slice(0, 1))], table=table, mode="replace", keys=["ref"])
    assert _constraints(db, table) == (kinds, not_null, defaults)
    assert db.rows(table, "ref") == [("R1", "Acme", 7, "open")]


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_records_violating_constraints_are_error_records_and_the_others_load(
    make: Any, db: Db, mode: str
) -> None:
    table = db.name("omis")
    first = batch(
        reference=["A", "B", "A", "N"],
        company=["a", None, "a again", "n"],
        code=["1", "2", "3", "1"],
        status=["x", "x", "x", "x"],
    )
    second = batch(
        reference=["C", "B", "A", None],
        company=["c", "b", "a once more", "no key"],
        code=[None, None, "9", "5"],
        status=["y", "y", "y", "y"],
    )
    batches = [_mapped(make, first), _mapped(make, second)]
    # The engine's lineage column travels with the records and comes back with the error records.
    batches = [
        b.append_column("__fp_rid", pa.array(range(i * 10, i * 10 + b.num_rows), pa.int64()))
        for i, b in enumerate(batches)
    ]
    destination = make(
        SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode=mode, keys=["ref"]
    )
    destination.open()
    errors = error_rows(write_all(destination, batches))
    destination.commit()
    destination.close()

    assert [(e["__fp_rid"], e["ref"], e["code"]) for e in errors] == [
        (1, "B", NOT_NULL_VIOLATION),  # company is NOT NULL
        (2, "A", DUPLICATE_KEY),  # A came first in this batch
        (3, "N", DUPLICATE_KEY),  # code 1 is UNIQUE and A has it
        (12, "A", DUPLICATE_KEY),  # A came in the first batch
        (13, None, NOT_NULL_VIOLATION),  # the primary key is NOT NULL
    ]
    by_rid = {e["__fp_rid"]: e["message"] for e in errors}
    assert "column 'company'" in by_rid[1] and "NOT NULL" in by_rid[1]
    assert "PRIMARY KEY" in by_rid[2] and "(ref)=('A')" in by_rid[2] and "earlier record" in by_rid[2]
    assert "UNIQUE" in by_rid[3] and "(code)=(1)" in by_rid[3]
    assert "column 'ref'" in by_rid[13]
    # B's first record was rejected, so its second one (and C with no code) loads.
    rows = db.rows(table, "ref")
    assert [(r[0], r[1], r[2]) for r in rows] == [("A", "a", 1), ("B", "b", None), ("C", "c", None)]
    assert not leftovers(db)


def test_appending_a_key_the_table_already_holds_is_an_error_record(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old'), (2, 'older')")
    destination = make(SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="append")
    destination.open()
    errors = error_rows(write_all(destination, [batch(id=[2, 3, 4], name=["dup", "new", None])]))
    destination.commit()
    destination.close()
    assert [(e["id"], e["code"]) for e in errors] == [(2, DUPLICATE_KEY), (4, NOT_NULL_VIOLATION)]
    assert "the table already holds this key" in errors[0]["message"]
    assert db.rows(table) == [(1, "old"), (2, "older"), (3, "new")]


def test_an_append_to_postgresql_asks_the_server_about_each_batchs_keys_only(
    make: Any, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys the table holds are looked up per batch with the key's index (arrays of the batch's
    keys, cast to the columns' types), never read in full: a stream's micro-batch into a big table
    reads nothing else."""
    from flowport.stages.sql.vendors.postgres.connection import PostgresConnection

    db = _open_db("postgresql", tmp_path, request)
    try:
        table = db.name()
        db.run(
            f"CREATE TABLE {db.quote(table)} (account uuid, at timestamp, amount numeric(10,2), "
            "note text NOT NULL, PRIMARY KEY (account, at))"
        )
        db.run(
            f"INSERT INTO {db.quote(table)} SELECT md5(i::text)::uuid, "
            "'2024-01-01'::timestamp + i * interval '1 hour', i, 'old' FROM generate_series(1, 5000) AS i"
        )
        present = db.run(f"SELECT account::text, at FROM {db.quote(table)} WHERE amount = 7")[0]

        def no_full_read(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the append read the table's keys in full")

        monkeypatch.setattr(PostgresConnection, "stream", no_full_read)
        fresh = "00000000-0000-0000-0000-000000000001"
        later = present[1] + dt.timedelta(minutes=1)
        first = pa.record_batch(
            {
                "account": [present[0], fresh, present[0], None],
                "at": pa.array([present[1], present[1], later, later], pa.timestamp("us")),
                "amount": pa.array(
                    [Decimal("1.00"), Decimal("2.00"), Decimal("3.00"), Decimal("4.00")], pa.decimal128(10, 2)
                ),
                "note": ["dup of the table", "new", "new", "no key"],
            }
        )
        second = pa.record_batch(
            {
                "account": [fresh, present[0]],
                "at": pa.array([present[1], present[1]], pa.timestamp("us")),
                "amount": pa.array([Decimal("5.00"), Decimal("6.00")], pa.decimal128(10, 2)),
                "note": ["dup of the first batch", "dup of the table again"],
            }
        )
        destination = make(
            SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="append"
        )
        destination.open()
        errors = error_rows(write_all(destination, [first, second]))
        # The second batch was asked about on a connection of its own (the first is busy with the
        # load's COPY): its transaction ended with the look-up, so it holds no lock on the table.
        holders = db.run(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE l.relation = '{table}'::regclass AND a.query NOT LIKE 'COPY %' "
            "AND l.pid <> pg_backend_pid()"
        )
        assert holders == [(0,)]
        destination.commit()
        destination.close()
        assert [(e["note"], e["code"]) for e in errors] == [
            ("dup of the table", DUPLICATE_KEY),
            ("no key", NOT_NULL_VIOLATION),
            ("dup of the first batch", DUPLICATE_KEY),
            ("dup of the table again", DUPLICATE_KEY),
        ]
        assert "the table already holds this key" in errors[0]["message"]
        assert "earlier record" in errors[2]["message"]
        assert "the table already holds this key" in errors[3]["message"]
        loaded = db.run(
            f"SELECT account::text, amount FROM {db.quote(table)} WHERE note = 'new' ORDER BY amount"
        )
        assert [(str(a), b) for a, b in loaded] == [(fresh, Decimal("2.00")), (present[0], Decimal("3.00"))]
        assert db.run(f"SELECT count(*) FROM {db.quote(table)}") == [(5002,)]
    finally:
        db.raw.close()


def test_upsert_checks_not_null_but_lets_keys_come_again(make: Any, db: Db) -> None:
    table = db.name()
    db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL)")
    db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
    destination = make(
        SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="upsert", keys=["id"]
    )
    destination.open()
    errors = error_rows(write_all(destination, [batch(id=[1, 2, 2], name=["new", None, "two"])]))
    destination.commit()
    destination.close()
    assert [(e["id"], e["code"]) for e in errors] == [(2, NOT_NULL_VIOLATION)]
    assert db.rows(table) == [(1, "new"), (2, "two")]


def test_declared_constraints_are_refused_unless_supported() -> None:
    with pytest.raises(ValueError, match="CHECK is not supported"):
        FieldMapper.config_model(fields=[{"source": "a", "type": "integer CHECK (a > 0)"}])
    with pytest.raises(ValueError, match="cannot read"):
        FieldMapper.config_model(fields=[{"source": "a", "type": "integer NOT NULL; DROP TABLE x"}])


# ---------------------------------------------------------------------------
# The data-flow seed: a dataset table reloaded under its view, through the engine
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["postgresql", "mysql", "sqlite"])
def test_the_seed_pattern_reloads_a_dataset_table_under_its_view(
    vendor: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from flowport.engine import FlowRun, RunContext

    db = _open_db(vendor, tmp_path, request)
    try:
        source, target, view = db.name("api"), db.name("omis_dataset"), db.name("completed")
        db.run(
            f"CREATE TABLE {db.quote(source)} "
            "(reference VARCHAR(20), company VARCHAR(20), status VARCHAR(20))"
        )
        origin = {
            "name": "Fetch_01",
            "plugin": {"name": "sql_query_origin", "type": "origin"},
            "configuration": {
                "connection": db.spec.name,
                "query": f"SELECT * FROM {db.quote(source)} ORDER BY reference",
            },
        }
        mapper = {
            "name": "Map_01",
            "plugin": {"name": "field_mapper", "type": "processor"},
            "configuration": {
                "fields": [
                    {"source": "reference", "type": "character varying(100) PRIMARY KEY"},
                    {"source": "company", "type": "character varying(255) NOT NULL"},
                    {"source": "status", "type": "text"},
                ]
            },
        }
        load_stage = {
            "name": "Load_01",
            "plugin": {"name": "sql_table_destination", "type": "destination"},
            "configuration": {
                "connection": db.spec.name,
                "table": target,
                "mode": "replace",
                "keys": ["reference"],
            },
        }
        boom = {
            "name": "Boom_01",
            "plugin": {"name": "sql", "type": "processor"},
            "configuration": {
                "query": "SELECT * FROM input "
                "WHERE CASE WHEN reference > 'R2' THEN error('boom') ELSE true END",
                "per_batch": True,
            },
        }
        registry = _registry()

        def run(stages: list[dict[str, Any]]) -> Any:
            names = [s["name"] for s in stages]
            flow = _flow(stages, list(itertools.pairwise(names)))
            context = RunContext(resources={"connections": db.lookup}, base_dir=tmp_path)
            return FlowRun(flow, registry, context).start().wait(timeout=120)

        def api(*rows: tuple[str, str | None, str]) -> None:
            db.run(f"DELETE FROM {db.quote(source)}")
            values = ", ".join(f"('{r}', {'NULL' if c is None else repr(c)}, '{s}')" for r, c, s in rows)
            db.run(f"INSERT INTO {db.quote(source)} VALUES {values}")

        def completed() -> list[tuple[Any, ...]]:
            return [tuple(r) for r in db.run(f"SELECT reference, company FROM {db.quote(view)} ORDER BY 1")]

        api(("R1", "Acme", "complete"), ("R2", "Globex", "open"))
        first = run([origin, mapper, load_stage])
        assert first.status == "Complete", first.error
        # The seed's ViewPipeline, created once over the dataset's table.
        db.run(
            f"CREATE VIEW {db.quote(view)} AS SELECT reference, company FROM {db.quote(target)} "
            "WHERE status = 'complete'"
        )
        assert completed() == [("R1", "Acme")]

        # A run that fails after some records changes nothing.
        api(("R1", "Acme", "open"), ("R2", "Globex", "complete"), ("R3", "Initech", "complete"))
        before = checksum(db.rows(target, "reference"))
        failed = run([origin, mapper, boom, load_stage])
        assert failed.status == "Failed"
        assert checksum(db.rows(target, "reference")) == before and completed() == [("R1", "Acme")]

        # Two reloads: the view stays and shows the new rows; a record breaking NOT NULL is an error record.
        for rows, expected in [
            (
                (("R1", "Acme", "open"), ("R2", "Globex", "complete"), ("R4", None, "complete")),
                [("R2", "Globex")],
            ),
            (
                (("R2", "Globex", "complete"), ("R5", "Hooli", "complete")),
                [("R2", "Globex"), ("R5", "Hooli")],
            ),
        ]:
            api(*rows)
            result = run([origin, mapper, load_stage])
            assert result.status == "Complete", result.error
            assert completed() == expected
            assert result.stages["Load_01"].error_records == sum(1 for r in rows if r[1] is None)
        assert view_exists(db, view)
        assert not leftovers(db)
    finally:
        db.raw.close()


def test_the_redshift_path_replaces_in_place_under_a_view(
    make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Redshift's code path (psycopg, multi-row INSERTs, catalog look-ups by name) against PostgreSQL;
    # TRUNCATE would commit on Redshift, so rows are deleted and inserted.
    db = _open_db("redshift", tmp_path, request)
    try:
        table, view = db.name(), db.name("v")
        db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER, name VARCHAR(20) NOT NULL)")
        db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
        db.run(f"CREATE VIEW {db.quote(view)} AS SELECT * FROM {db.quote(table)}")
        caplog.set_level(logging.INFO, logger=LOGGER)
        destination = make(
            SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="replace"
        )
        destination.open()
        errors = error_rows(write_all(destination, [batch(id=[2, 3], name=["new", None])]))
        destination.commit()
        destination.close()
        assert [(e["id"], e["code"]) for e in errors] == [(3, NOT_NULL_VIOLATION)]
        assert db.rows(view) == [(2, "new")]
        assert strategies(caplog) == [DELETE_INSERT]
        assert not leftovers(db)
    finally:
        db.raw.close()


def test_declared_literal_defaults_are_rendered_for_each_vendor(make: Any, db: Db) -> None:
    mapper = make(
        FieldMapper,
        Lookup(),
        fields=[
            {"source": "id", "type": "integer PRIMARY KEY"},
            {"source": "flag", "type": "boolean DEFAULT TRUE"},
            {"source": "note", "type": "character varying(20) DEFAULT 'it''s a \\ test'"},
            {"source": "day", "type": "date DEFAULT CURRENT_DATE"},
            {"source": "at", "type": "timestamp DEFAULT CURRENT_TIMESTAMP"},
            {"source": "n", "type": "numeric(6,2) DEFAULT -1.5"},
        ],
    )
    mapper.open()
    raw = batch(id=["1"], flag=["false"], note=["x"], day=["2024-01-02"], at=["2024-01-02 03:04:05"], n=["2"])
    out = mapper.process(raw).records
    assert out is not None
    table = db.name()
    load(make, db, out.to_batches() if isinstance(out, pa.Table) else [out], table=table)
    db.run(f"INSERT INTO {db.quote(table)} (id) VALUES (2)")
    columns = ", ".join(db.quote(c) for c in ("flag", "note", "day", "at", "n"))
    row = db.run(f"SELECT {columns} FROM {db.quote(table)} WHERE id = 2")[0]
    assert bool(row[0]) is True
    assert row[1] == "it's a \\ test"
    assert row[2] is not None and row[3] is not None
    assert float(row[4]) == -1.5


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"])
def test_a_dependent_created_during_the_load_is_kept(
    vendor: str, make: Any, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _open_db(vendor, tmp_path, request)
    try:
        table, audit = db.name(), db.name("audit")
        db.run(f"CREATE TABLE {db.quote(table)} (id INTEGER PRIMARY KEY, name VARCHAR(20))")
        db.run(f"INSERT INTO {db.quote(table)} VALUES (1, 'old')")
        caplog.set_level(logging.INFO, logger=LOGGER)
        destination = make(
            SqlTableDestination, db.lookup, connection=db.spec.name, table=table, mode="replace"
        )
        destination.open()  # nothing depends on the table yet: a rename swap is planned
        write_all(destination, [batch(id=[2], name=["new"])])
        if vendor == "postgresql":
            dependent = db.name("v")
            db.run(f"CREATE VIEW {db.quote(dependent)} AS SELECT * FROM {db.quote(table)}")
        else:
            db.run(f"CREATE TABLE {db.quote(audit)} (id INTEGER)")
            dependent = db.name("trg")
            db.run(
                f"CREATE TRIGGER {db.quote(dependent)} AFTER INSERT ON {db.quote(table)} "
                f"FOR EACH ROW INSERT INTO {db.quote(audit)} VALUES (NEW.id)"
            )
        destination.commit()
        destination.close()
        assert db.rows(table) == [(2, "new")]
        if vendor == "postgresql":
            assert db.rows(dependent) == [(2, "new")]
        else:
            assert db.rows(audit) == [(2,)]  # the trigger is still on the table, and fired
        assert strategies(caplog) == [TRUNCATE_INSERT if vendor == "postgresql" else DELETE_INSERT]
        assert not leftovers(db)
    finally:
        db.raw.close()


def test_declared_types_split_off_their_constraints() -> None:
    from flowport.stages.sqltypes import ColumnConstraints, DefaultValue, split_declared

    assert split_declared("character varying(100) PRIMARY KEY") == (
        "character varying(100)",
        ColumnConstraints(primary_key=True),
    )
    assert split_declared("numeric(10, 2) not null unique") == (
        "numeric(10, 2)",
        ColumnConstraints(not_null=True, unique=True),
    )
    assert split_declared("""text DEFAULT 'it''s' CONSTRAINT "My Key" UNIQUE""") == (
        "text",
        ColumnConstraints(unique=True, unique_name="My Key", default=DefaultValue("text", "it's")),
    )
    assert split_declared("integer constraint pk primary key default -1") == (
        "integer",
        ColumnConstraints(primary_key=True, primary_key_name="pk", default=DefaultValue("number", "-1")),
    )
    assert split_declared("timestamp with time zone") == ("timestamp with time zone", ColumnConstraints())
    for bad in ("integer NULL NOT NULL", "text DEFAULT now()", "integer REFERENCES t (id)", "int UNIQUE;"):
        with pytest.raises(ValueError, match="type"):
            split_declared(bad)
