"""The store's triggers move a topic's generation on every write to its tables, whoever writes.

Writes go through plain SQL on a connection of their own, as another
process, a migration or a hand-written fix would: the triggers, not the
services, must see them. Runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from flowport.store import changes
from flowport.store.database import get_engine

# (table, an insert, an update, a delete) for each topic; :n makes names unique.
WRITES = {
    changes.FLOWS: [
        (
            "projects",
            "INSERT INTO projects (id, name, description, created_at, updated_at) "
            "VALUES (90, 'P', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "UPDATE projects SET name = 'P2' WHERE id = 90",
            None,
        ),
        (
            "flows",
            "INSERT INTO flows (id, uuid, project_id, name, description, type, document, "
            "created_at, updated_at) "
            "VALUES (91, :uuid, 90, 'F', '', 'batch', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "UPDATE flows SET name = 'F2' WHERE id = 91",
            "DELETE FROM flows WHERE id = 91",
        ),
        ("projects", None, None, "DELETE FROM projects WHERE id = 90"),
    ],
    changes.AUTH: [
        (
            "users",
            "INSERT INTO users (id, name, password_hash, role, created_at, updated_at) "
            "VALUES (92, 'u', 'x', 'viewer', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "UPDATE users SET role = 'editor' WHERE id = 92",
            None,
        ),
        (
            "api_tokens",
            "INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, created_at) "
            "VALUES (93, 92, 't', 'fpt_12345678', 'h', CURRENT_TIMESTAMP)",
            "UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE id = 93",
            "DELETE FROM api_tokens WHERE id = 93",
        ),
        ("users", None, None, "DELETE FROM users WHERE id = 92"),
    ],
}


@pytest.mark.parametrize("topic", sorted(WRITES))
def test_every_insert_update_and_delete_moves_its_topic_and_no_other(store: str, topic: str) -> None:
    other = changes.AUTH if topic == changes.FLOWS else changes.FLOWS
    engine = get_engine(store)
    for table, *statements in WRITES[topic]:
        for statement in statements:
            if statement is None:
                continue
            before, untouched = changes.generation(store, topic), changes.generation(store, other)
            with engine.begin() as connection:
                connection.execute(text(statement), {"uuid": uuid.uuid4().hex})
            after = changes.generation(store, topic)
            assert after > before >= 0, (table, statement)
            assert changes.generation(store, other) == untouched, (table, statement)


def test_a_write_rolled_back_moves_nothing(store: str) -> None:
    before = changes.generation(store, changes.FLOWS)
    with get_engine(store).connect() as connection:
        transaction = connection.begin()
        connection.execute(text(WRITES[changes.FLOWS][0][1]))
        # Inside the writing transaction the move is visible, to it alone.
        assert (
            connection.execute(
                text("SELECT generation FROM store_changes WHERE topic = 'flows'")
            ).scalar_one()
            > before
        )
        assert changes.generation(store, changes.FLOWS) == before
        transaction.rollback()
    assert changes.generation(store, changes.FLOWS) == before


def test_generations_start_somewhere_new_in_each_database(store: str) -> None:
    # A database dropped and created again under the same URL must not repeat the generations a
    # process saw of the old one: each starts at a random point of a 2**60 range.
    assert changes.generation(store, changes.FLOWS) != changes.generation(store, changes.AUTH)
    assert changes.generation(store, "no such topic") == -1
