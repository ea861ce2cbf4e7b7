"""Ids are never handed out twice, in any table of the metadata store (revision 0004).

The same tests run on SQLite, PostgreSQL and MariaDB (see conftest.py);
the ones about rebuilding tables concern SQLite, where revision 0004 does its work.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.exc import IntegrityError

from flowport.store import schema
from flowport.store.database import get_engine
from flowport.store.schema import MIGRATIONS_DIR, StoreNotReady, current_revision, downgrade, upgrade
from flowport.store.tables import Base

PREVIOUS = "0003"
# Unique names across every Rows of the test session.
_NUMBERS = itertools.count(1)


def _id_tables(metadata: MetaData) -> set[str]:
    """Tables whose key is one integer column that the database numbers."""
    names = set()
    for table in metadata.tables.values():
        key = list(table.primary_key.columns)
        if len(key) == 1 and isinstance(key[0].type, Integer) and key[0].autoincrement is not False:
            names.add(table.name)
    return names


# Tables of revision 0004 (the one these tests are about); later revisions' tables are checked at head.
LATER_TABLES = {
    "job_events",
    "schedules",
    "backfills",
    "webhooks",
    "webhook_deliveries",
    "pipelines",
    "task_runs",
}
ID_TABLES = _id_tables(Base.metadata) - LATER_TABLES
# The revision these tests are about (later ones may add columns the 0003 rows do not have).
IDS_REVISION = "0004"


class Rows:
    """Inserts a valid row into any table with an id, creating the parent rows it needs once."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.parents: dict[str, int] = {}

    def parent(self, table: str) -> int:
        if table not in self.parents:
            self.parents[table] = self.insert(table)
        return self.parents[table]

    def _table(self, table: str) -> Table:
        # Today's table narrowed to the columns this store's revision has (a later revision may add some).
        existing = {column["name"] for column in inspect(self.connection).get_columns(table)}
        model = Base.metadata.tables[table]
        return Table(table, MetaData(), *(c._copy() for c in model.columns if c.name in existing))

    def insert(self, table: str, **values: Any) -> int:
        row = {**self._values(table, next(_NUMBERS)), **values}
        result = self.connection.execute(self._table(table).insert().values(**row))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def delete(self, table: str, row_id: int) -> None:
        rows = Base.metadata.tables[table]
        assert self.connection.execute(rows.delete().where(rows.c.id == row_id)).rowcount == 1

    def _values(self, table: str, n: int) -> dict[str, Any]:
        factories: dict[str, Callable[[], dict[str, Any]]] = {
            "connections": lambda: {"name": f"conn {n}", "vendor": "postgresql"},
            "users": lambda: {"name": f"user {n}", "password_hash": "$argon2id$x", "role": "viewer"},
            "api_tokens": lambda: {
                "user_id": self.parent("users"),
                "name": f"token {n}",
                "token_hash": f"{n:064d}",
                "prefix": "fp_x",
            },
            "projects": lambda: {"name": f"project {n}"},
            "flows": lambda: {
                "uuid": uuid.uuid4(),
                "project_id": self.parent("projects"),
                "name": f"flow {n}",
                "document": {"name": f"flow {n}"},
            },
            "parameter_sets": lambda: {"project_id": self.parent("projects"), "name": f"set {n}"},
            "job_groups": lambda: {"flow_id": self.parent("flows"), "status": "Complete"},
            "job_events": lambda: {
                "job_group_id": self.parent("job_groups"),
                "from_status": "Created",
                "to_status": "Pending",
            },
            "jobs": lambda: {"job_group_id": self.parent("job_groups"), "flow_id": self.parent("flows")},
            "schedules": lambda: {
                "name": f"schedule {n}",
                "description": "",
                "flow_id": self.parent("flows"),
                "cron": "@daily",
                "timezone": "UTC",
                "catchup": False,
                "max_active_runs": 1,
                "paused": False,
                "parameters": {},
            },
            "backfills": lambda: {
                "schedule_id": self.parent("schedules"),
                "start_date": datetime(2026, 1, 1, tzinfo=UTC),
                "end_date": datetime(2026, 1, 2, tzinfo=UTC),
                "reprocess": "none",
                "max_active_runs": 1,
                "status": "Running",
            },
            "webhooks": lambda: {
                "name": f"webhook {n}",
                "description": "",
                "url": "https://example.com/hook",
                "events": ["job.failed"],
                "secret": b"token",
                "enabled": True,
            },
            "pipelines": lambda: {
                "project_id": self.parent("projects"),
                "name": f"pipeline {n}",
                "description": "",
                "document": {"name": f"pipeline {n}"},
            },
            "task_runs": lambda: {
                "job_group_id": self.parent("job_groups"),
                "task": f"task {n}",
                "kind": "shell",
                "status": "Complete",
                "attempts": 1,
                "log": "",
            },
            "webhook_deliveries": lambda: {
                "webhook_id": self.parent("webhooks"),
                "event_id": n,
                "event_name": "job.failed",
                "payload": {},
                "status": "pending",
                "attempts": 0,
                "attempt_log": [],
            },
            # A deployment owns its project: a new one each time.
            "deployments": lambda: {"name": f"deployment {n}", "project_id": self.insert("projects")},
            "releases": lambda: {
                "deployment_id": self.parent("deployments"),
                "package_uuid": uuid.uuid4(),
                "package_sha256": "0" * 64,
                "package": b"PK\x05\x06" + bytes(18),
                "primary_flow_id": self.parent("flows"),
            },
            "import_rules": lambda: {
                "deployment_id": self.parent("deployments"),
                "kind": "value",
                "position": n,
                "rule": {"from": "dev/", "to": "prod/"},
            },
        }
        return factories[table]()


def _create_at(url: str, revision: str) -> None:
    """A store created by a Flowport whose newest revision was ``revision``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table with an id, in id order."""
    with get_engine(url).connect() as connection:
        tables = {name: Rows(connection)._table(name) for name in sorted(ID_TABLES)}
        return {
            name: [tuple(row) for row in connection.execute(select(table).order_by(table.c.id))]
            for name, table in tables.items()
        }


def _structure(url: str) -> dict[str, Any]:
    """Columns, keys, indexes and constraints of each table as the database reports them.

    The primary key's name is left out: SQLite does not keep one for an AUTOINCREMENT column.
    """
    inspector = inspect(get_engine(url))
    structure: dict[str, Any] = {}
    for name in sorted(ID_TABLES | {"instance"}):
        structure[name] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            "key": inspector.get_pk_constraint(name)["constrained_columns"],
            "foreign": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    fk["options"].get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(name)
                if ix["name"] and not ix["name"].startswith("uq_")  # MariaDB lists unique keys twice
            ),
            "unique": sorted(
                (uq["name"], tuple(uq["column_names"])) for uq in inspector.get_unique_constraints(name)
            ),
            "checks": sorted(ck["name"] for ck in inspector.get_check_constraints(name)),
        }
    return structure


def _sqlite_sql(url: str) -> dict[str, str]:
    with get_engine(url).connect() as connection:
        rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        return {str(name): str(sql) for name, sql in rows}


def _store_with_history(url: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Related rows in every table, the newest row of each deleted.

    Returns:
        The ids per table (``first``, ``second`` and the ``deleted`` newest), and
        the parent row of each table the other rows refer to (created first).
    """
    ids: dict[str, dict[str, int]] = {}
    with get_engine(url).begin() as connection:
        rows = Rows(connection)
        for table in sorted(ID_TABLES):
            rows.parent(table)
        for table in sorted(ID_TABLES):
            first, second, last = rows.insert(table), rows.insert(table), rows.insert(table)
            ids[table] = {"first": first, "second": second, "deleted": last}
        for table in sorted(ID_TABLES):
            rows.delete(table, ids[table]["deleted"])
    return ids, rows.parents


# -- the schema --------------------------------------------------------------------------


def test_every_table_with_an_id_is_covered(tmp_path: Path) -> None:
    # A new table must say how its rows are made here, and must not reuse ids either.
    assert {"connections", "flows", "jobs", "deployments", "import_rules"} <= ID_TABLES
    assert "instance" not in ID_TABLES  # one row, id 1
    for name in ID_TABLES:
        assert Base.metadata.tables[name].dialect_options["sqlite"]["autoincrement"] is True, name
    with get_engine(f"sqlite:///{tmp_path / 'models.db'}").begin() as connection:
        Base.metadata.create_all(connection)
        rows = Rows(connection)
        for name in ID_TABLES:
            rows.insert(name)


def test_every_id_comes_from_a_counter_that_never_goes_back(store: str) -> None:
    engine = get_engine(store)
    with engine.connect() as connection:
        for name in sorted(ID_TABLES):
            if engine.dialect.name == "sqlite":
                assert "AUTOINCREMENT" in _sqlite_sql(store)[name], name
            elif engine.dialect.name == "postgresql":
                # SERIAL: a sequence owned by the column (NO CYCLE), which never hands a value out twice.
                sequence = connection.execute(text(f"SELECT pg_get_serial_sequence('{name}', 'id')")).scalar()
                assert sequence, name
                cycles = connection.execute(
                    text("SELECT seqcycle FROM pg_sequence WHERE seqrelid = CAST(:s AS regclass)"),
                    {"s": sequence},
                ).scalar()
                assert cycles is False, name
            else:
                extra = connection.execute(
                    text(
                        "SELECT extra FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND table_name = :t AND column_name = 'id'"
                    ),
                    {"t": name},
                ).scalar()
                assert "auto_increment" in str(extra).lower(), name
        if engine.dialect.name == "sqlite":
            assert "AUTOINCREMENT" not in _sqlite_sql(store)["instance"]


def test_a_deleted_rows_id_is_never_handed_out_again(store: str) -> None:
    with get_engine(store).begin() as connection:
        rows = Rows(connection)
        for name in sorted(ID_TABLES):
            first, last = rows.insert(name), rows.insert(name)
            rows.delete(name, last)
            again = rows.insert(name)
            assert again not in {first, last}, name
            assert again > last, name
    # Also across transactions and connections, after the newest row went.
    with get_engine(store).begin() as connection:
        newest = Rows(connection).insert("flows")
        Rows(connection).delete("flows", newest)
    with get_engine(store).begin() as connection:
        assert Rows(connection).insert("flows") > newest


# -- upgrading a store created before revision 0004 ------------------------------------------


def test_upgrade_from_0003_keeps_every_row_relation_and_constraint_and_never_goes_back(
    empty_store: str,
) -> None:
    _create_at(empty_store, PREVIOUS)
    ids, parents = _store_with_history(empty_store)
    rows_before, structure_before = _snapshot(empty_store), _structure(empty_store)

    assert upgrade(empty_store, IDS_REVISION) == IDS_REVISION

    assert _snapshot(empty_store) == rows_before
    assert _structure(empty_store) == structure_before
    engine = get_engine(empty_store)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA foreign_key_check")).fetchall() == []
            assert not [name for name in _sqlite_sql(empty_store) if name.startswith("_alembic")]
        rows = Rows(connection)
        for name in sorted(ID_TABLES):
            existing = [row[0] for row in rows_before[name]]
            new = rows.insert(name)
            assert new > max(existing), name
            if engine.dialect.name != "sqlite":
                # A sequence remembers ids deleted before the upgrade; SQLite without
                # AUTOINCREMENT kept no trace of them, so 0004 can only start above max(id).
                assert new > ids[name]["deleted"], name
            rows.delete(name, new)
            assert rows.insert(name) > new, name

    # The foreign keys still act: a deleted flow leaves its jobs, a job group takes them along.
    tables = Base.metadata.tables
    jobs = tables["jobs"]
    with engine.begin() as connection:
        flow, group = parents["flows"], parents["job_groups"]
        assert connection.execute(select(jobs.c.id).where(jobs.c.job_group_id == group)).all() != []
        connection.execute(tables["flows"].delete().where(tables["flows"].c.id == flow))
        assert connection.execute(select(jobs.c.id).where(jobs.c.flow_id == flow)).all() == []
        assert connection.execute(select(jobs.c.id).where(jobs.c.flow_id.is_(None))).all() != []
        connection.execute(tables["job_groups"].delete().where(tables["job_groups"].c.id == group))
        assert connection.execute(select(jobs.c.id).where(jobs.c.job_group_id == group)).all() == []
    with pytest.raises(IntegrityError), engine.begin() as connection:
        Rows(connection).insert("flows", project_id=10_000)


def test_downgrade_to_0003_keeps_the_rows_and_upgrade_again_keeps_counting(empty_store: str) -> None:
    _create_at(empty_store, PREVIOUS)
    structure_0003 = _structure(empty_store)
    sql_0003 = _sqlite_sql(empty_store) if empty_store.startswith("sqlite") else {}
    upgrade(empty_store, IDS_REVISION)
    _store_with_history(empty_store)
    rows = _snapshot(empty_store)

    assert downgrade(empty_store, PREVIOUS) == PREVIOUS
    assert _snapshot(empty_store) == rows
    assert _structure(empty_store) == structure_0003
    if sql_0003:
        sql = _sqlite_sql(empty_store)
        for name in ID_TABLES:
            assert "AUTOINCREMENT" not in sql[name]
            assert f"CONSTRAINT pk_{name} PRIMARY KEY (id)" in sql[name], name

    assert upgrade(empty_store, IDS_REVISION) == IDS_REVISION
    assert _snapshot(empty_store) == rows
    with get_engine(empty_store).begin() as connection:
        for name in sorted(ID_TABLES):
            assert Rows(connection).insert(name) > max(row[0] for row in rows[name]), name


# -- SQLite: rebuilding tables safely --------------------------------------------------------


@pytest.fixture
def sqlite_0003(tmp_path: Path) -> str:
    """A SQLite store at revision 0003 with rows in every table."""
    url = f"sqlite:///{tmp_path / 'old' / 'flowport.db'}"
    _create_at(url, PREVIOUS)
    _store_with_history(url)
    return url


def test_0004_refuses_to_run_with_foreign_keys_on_rather_than_lose_rows(sqlite_0003: str) -> None:
    # Alembic driven directly on a connection with foreign keys on (as `alembic upgrade` would).
    rows = _snapshot(sqlite_0003)
    with pytest.raises(RuntimeError, match="foreign_keys=OFF"):
        _create_at(sqlite_0003, "0004")
    assert current_revision(sqlite_0003) == PREVIOUS
    assert _snapshot(sqlite_0003) == rows


def test_a_failed_upgrade_leaves_the_store_as_it_was(sqlite_0003: str) -> None:
    # A row that breaks a CHECK constraint (written around it) stops the copy of job_groups,
    # after several tables were rebuilt already: all of it is rolled back.
    with get_engine(sqlite_0003).connect() as connection:
        connection.exec_driver_sql("PRAGMA ignore_check_constraints=ON")
        connection.exec_driver_sql("UPDATE job_groups SET status = 'Running'")
        connection.exec_driver_sql("PRAGMA ignore_check_constraints=OFF")
        connection.commit()
    rows, sql = _snapshot(sqlite_0003), _sqlite_sql(sqlite_0003)
    with pytest.raises(IntegrityError, match="CHECK"):
        upgrade(sqlite_0003, IDS_REVISION)
    assert current_revision(sqlite_0003) == PREVIOUS
    assert _sqlite_sql(sqlite_0003) == sql
    assert _snapshot(sqlite_0003) == rows
    with get_engine(sqlite_0003).connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_rows_already_orphaned_do_not_stop_an_upgrade(sqlite_0003: str) -> None:
    with get_engine(sqlite_0003).connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        connection.exec_driver_sql("UPDATE parameter_sets SET project_id = 10000")
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
    assert upgrade(sqlite_0003, IDS_REVISION) == IDS_REVISION
    with get_engine(sqlite_0003).connect() as connection:
        orphans = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        assert {row[0] for row in orphans} == {"parameter_sets"}


def test_a_migration_that_would_orphan_rows_is_rolled_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with get_engine(url).begin() as connection:
        Rows(connection).insert("flows")
    with (
        pytest.raises(StoreNotReady, match=r"1 row\(s\) would refer to missing rows \(flows -> projects\)"),
        get_engine(url).connect() as connection,
        schema._migration_transaction(connection, "upgrade", url),
    ):
        # With foreign keys off, as a table rebuild runs.
        connection.exec_driver_sql("DELETE FROM projects")
    with get_engine(url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM projects")).scalar() == 2
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_new_store_is_created_at_the_new_head(empty_store: str) -> None:
    head = schema.head_revision()
    assert "0004" in {
        r.revision for r in ScriptDirectory(str(MIGRATIONS_DIR)).iterate_revisions(head, "base")
    }
    assert upgrade(empty_store) == head == current_revision(empty_store)
    assert ID_TABLES | {"instance"} <= set(inspect(get_engine(empty_store)).get_table_names())


def test_tables_added_after_0004_never_reuse_ids_either(store: str) -> None:
    assert _id_tables(Base.metadata) >= LATER_TABLES
    with get_engine(store).begin() as connection:
        rows = Rows(connection)
        for name in sorted(LATER_TABLES):
            first = rows.insert(name)
            rows.delete(name, first)
            assert rows.insert(name) > first, name
