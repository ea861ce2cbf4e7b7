"""A deleted flow's id never goes to another flow: a stale id answers NotFound, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from tests.connections.live_servers import postgres_database

from flowport.errors import NotFound
from flowport.services import flow_records, instance
from flowport.store.database import DATABASE_URL_ENV, database_url, dispose_engines, get_engine
from flowport.store.schema import MIGRATIONS_DIR, current_revision, head_revision


@pytest.fixture(scope="module")
def _postgresql_url() -> Iterator[str]:
    with postgres_database("flowport_flow_ids") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty metadata store (its URL): the instance's SQLite file or a PostgreSQL database."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(flow_records.DATA_DIR_ENV, raising=False)
    if request.param == "postgresql":
        url = request.getfixturevalue("_postgresql_url")
        engine = get_engine(url)
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
        monkeypatch.setenv(DATABASE_URL_ENV, url)
    return database_url()


def _flow(name: str) -> dict[str, object]:
    return {"format": "flowport.flow/1", "uuid": str(uuid.uuid4()), "name": name, "type": "batch"}


def _delete_then_create(kept: int) -> None:
    newest = flow_records.create_flow(_flow("Newest"))["id"]
    flow_records.delete_flow(newest)
    other = flow_records.create_flow(_flow("Someone else's"))
    assert other["id"] != newest
    assert other["id"] > newest
    # A stale client still holding the deleted id must not reach the new flow.
    with pytest.raises(NotFound):
        flow_records.delete_flow(newest)
    with pytest.raises(NotFound):
        flow_records.get_flow(newest)
    assert flow_records.get_flow(other["id"])["name"] == "Someone else's"
    assert flow_records.get_flow(kept)["name"] == "Kept"


def test_deleting_the_newest_flow_then_creating_one_gives_a_new_id(store: str) -> None:
    instance.init_instance()
    kept = flow_records.create_flow(_flow("Kept"))["id"]
    _delete_then_create(kept)


def test_init_upgrades_a_store_of_the_previous_revision(store: str) -> None:
    # A store written by the Flowport before revision 0004 (created directly at 0003).
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with get_engine(store).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    assert current_revision(store) == "0003"
    instance.init_instance()  # what `flowport init` and `flowport server` run
    assert current_revision(store) == head_revision()
    kept = flow_records.create_flow(_flow("Kept"))["id"]
    _delete_then_create(kept)
