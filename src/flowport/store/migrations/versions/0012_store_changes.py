"""Store changes: a generation per topic that the database's triggers move on every write.

``store_changes`` holds one row per topic: ``flows`` (tables ``flows`` and
``projects``) and ``auth`` (``users`` and ``api_tokens``). A trigger on each
of a topic's tables adds one to its generation in the writing transaction,
on insert, update and delete, whoever writes: a reader that saw the same
generation may answer from what it read then (the flow list and the API
token check do). Triggers rather than the application: a write from
another process, another interface, a migration or plain SQL moves it too.

MariaDB does not fire triggers for rows changed by a foreign key's cascade;
no cascade reaches these tables. A later migration that recreates one of
them (SQLite's batch mode copies a table) must create its triggers again:
tests/store/test_store_changes.py checks they exist at head.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# topic -> the tables whose writes move its generation.
TOPICS = {"flows": ("flows", "projects"), "auth": ("users", "api_tokens")}
_EVENTS = ("insert", "update", "delete")


def _trigger(table: str, event: str = "") -> str:
    return f"store_changes_{table}" + (f"_{event}" if event else "")


def upgrade() -> None:
    """Create store_changes, a row per topic, and the triggers that move it."""
    changes = op.create_table(
        "store_changes",
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("topic", name=op.f("pk_store_changes")),
    )
    # A random start: a database dropped and created again under the same URL never repeats the
    # generations a reader saw of the old one.
    op.bulk_insert(changes, [{"topic": topic, "generation": secrets.randbelow(1 << 60)} for topic in TOPICS])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION flowport_store_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE store_changes SET generation = generation + 1 WHERE topic = TG_ARGV[0];
              RETURN NULL;
            END
            $$
            """
        )
    for topic, tables in TOPICS.items():
        bump = f"UPDATE store_changes SET generation = generation + 1 WHERE topic = '{topic}'"
        for table in tables:
            if dialect == "postgresql":
                # Once per statement (a bulk write moves it once), TRUNCATE included.
                op.execute(
                    f"CREATE TRIGGER {_trigger(table)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                    f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION flowport_store_change('{topic}')"
                )
                continue
            for event in _EVENTS:
                if dialect == "sqlite":
                    op.execute(
                        f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} ON {table} "
                        f"BEGIN {bump}; END"
                    )
                else:  # MariaDB / MySQL
                    op.execute(
                        f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} ON {table} "
                        f"FOR EACH ROW {bump}"
                    )


def downgrade() -> None:
    """Drop the triggers, their function and store_changes."""
    dialect = op.get_bind().dialect.name
    for tables in TOPICS.values():
        for table in tables:
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table)} ON {table}")
                continue
            for event in _EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, event)}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS flowport_store_change()")
    op.drop_table("store_changes")
