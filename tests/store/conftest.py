"""Store fixtures: the same tests run against every database the metadata store supports.

SQLite is a temporary file per test; PostgreSQL and MariaDB get one
uniquely named database per test session (dropped at the end), emptied
after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData
from sqlalchemy.orm import Session
from tests.connections.live_servers import mariadb_database, postgres_database

from flowport.store.database import dispose_engines, get_engine, session_factory
from flowport.store.schema import upgrade

STORES = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(scope="session")
def postgresql_store_url() -> Iterator[str]:
    with postgres_database("flowport_store") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        dispose_engines()


@pytest.fixture(scope="session")
def mariadb_store_url() -> Iterator[str]:
    with mariadb_database("flowport_store") as name:
        yield f"mysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
        dispose_engines()


def _drop_everything(url: str) -> None:
    # Reflection empties the database whatever state a test left it in
    # (half-migrated, stamped with an unknown revision, ...).
    engine = get_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


@pytest.fixture(params=STORES)
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each supported kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'flowport.db'}"
        return
    url = request.getfixturevalue(f"{request.param}_store_url")
    _drop_everything(url)
    yield url
    _drop_everything(url)


@pytest.fixture
def store(empty_store: str) -> str:
    """The URL of a database at the newest schema revision."""
    upgrade(empty_store)
    return empty_store


@pytest.fixture
def session(store: str) -> Iterator[Session]:
    """A session on :func:`store`; whatever the test did not commit is rolled back."""
    with session_factory(store)() as s:
        yield s
        s.rollback()
