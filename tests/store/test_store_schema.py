"""Migrations: create, upgrade, downgrade, and agreement of the migrations with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from flowport.store import connections as repo
from flowport.store import instance
from flowport.store.database import get_engine, transaction
from flowport.store.schema import (
    StoreNotReady,
    current_revision,
    downgrade,
    head_revision,
    require_head,
    upgrade,
)
from flowport.store.tables import Base


def test_a_new_database_has_no_revision_and_an_absent_sqlite_file_stays_absent(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "flowport.db"
    assert current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def test_upgrade_creates_every_table_at_head(empty_store: str) -> None:
    assert current_revision(empty_store) is None
    assert upgrade(empty_store) == head_revision() == current_revision(empty_store)
    tables = set(inspect(get_engine(empty_store)).get_table_names())
    assert {"instance", "connections", "alembic_version"} <= tables


def test_migrations_match_the_models(store: str) -> None:
    # An empty diff means the revisions build exactly what tables.py declares.
    with get_engine(store).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_again_is_a_no_op_that_keeps_rows(store: str) -> None:
    with transaction(store) as s:
        created = repo.create(s, name="Keep me", vendor="postgresql", secret=b"token")
        instance_uuid = instance.ensure(s).uuid
    assert upgrade(store) == head_revision()
    assert upgrade(store) == head_revision()
    with transaction(store) as s:
        kept = repo.get_by_name(s, "Keep me")
        assert (kept.id, kept.uuid, kept.secret) == (created.id, created.uuid, b"token")
        assert instance.get(s).uuid == instance_uuid
        assert repo.count(s) == 1


def test_downgrade_to_base_drops_the_tables_and_upgrade_recreates_them(store: str) -> None:
    with transaction(store) as s:
        repo.create(s, name="Gone", vendor="sqlite")
    assert downgrade(store, "base") is None
    assert not {"instance", "connections"} & set(inspect(get_engine(store)).get_table_names())
    assert upgrade(store) == head_revision()
    with transaction(store) as s:
        assert repo.count(s) == 0


def test_require_head_says_to_run_init(empty_store: str) -> None:
    with pytest.raises(StoreNotReady, match="not initialized: run `flowport init`"):
        require_head(empty_store)
    upgrade(empty_store)
    assert require_head(empty_store) == head_revision()


def test_a_database_from_a_newer_flowport_is_refused_clearly(store: str) -> None:
    with get_engine(store).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'zz99_future'"))
    with pytest.raises(StoreNotReady, match="zz99_future, unknown to this version"):
        require_head(store)
    with pytest.raises(StoreNotReady, match="newer version of Flowport"):
        upgrade(store)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'flowport.db'}"
    upgrade(url)
    with get_engine(url).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
