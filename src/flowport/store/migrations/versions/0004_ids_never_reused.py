"""Ids are never reused: SQLite tables get AUTOINCREMENT.

Without ``AUTOINCREMENT`` SQLite hands out ``max(rowid) + 1``, so the id of
the most recently created row comes back after that row is deleted (a stale
client then acts on someone else's flow). Each table with an integer
surrogate key is rebuilt with ``AUTOINCREMENT`` (Alembic's batch "move and
copy"), keeping every row, column type, index, unique, check and foreign
key constraint. Copying the rows into the new table seeds ``sqlite_sequence``
with the table's highest id, so every id handed out afterwards is greater
than every id that exists. An id deleted *before* this revision leaves no
trace in SQLite and cannot be known.

PostgreSQL (``SERIAL`` sequences) and MariaDB (``AUTO_INCREMENT``, kept
across restarts since 10.2.4) never hand an id out twice: nothing changes there.
The single-row ``instance`` table has the fixed id 1 and keeps it.

Rebuilding a parent table drops it, which with SQLite foreign keys on would
cascade to (or refuse because of) its children: this revision needs foreign
keys off, as :func:`flowport.store.schema.upgrade` runs every migration on
SQLite (it checks the foreign keys before committing).

Revision ID: 0004
Revises: 0003
Create Date: 2025-04-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table of 0003 with an integer surrogate key ("instance" has the fixed id 1).
_TABLES = (
    "connections",
    "users",
    "api_tokens",
    "projects",
    "flows",
    "parameter_sets",
    "job_groups",
    "jobs",
    "deployments",
    "releases",
    "import_rules",
)


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # Refuse rather than lose rows: dropping the old parent table would
        # delete (ON DELETE CASCADE) or orphan (SET NULL) its children's rows.
        raise RuntimeError(
            "Revision 0004 rebuilds the SQLite tables and needs PRAGMA foreign_keys=OFF; "
            "run it with `flowport init`, which turns them off around the migrations"
        )
    for table in _TABLES:
        # Reflection keeps the columns, their types and the named constraints;
        # the indexes are created again after the copy. The primary key comes
        # back unnamed from an AUTOINCREMENT column: the convention names it again.
        with op.batch_alter_table(
            table,
            recreate="always",
            table_kwargs={"sqlite_autoincrement": autoincrement},
            naming_convention={"pk": "pk_%(table_name)s"},
        ):
            pass


def upgrade() -> None:
    """Rebuild the SQLite tables with AUTOINCREMENT (nothing to do on other databases)."""
    _rebuild(autoincrement=True)


def downgrade() -> None:
    """Rebuild the SQLite tables without AUTOINCREMENT, as 0003 created them (they keep their rows)."""
    _rebuild(autoincrement=False)
