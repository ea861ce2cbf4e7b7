"""Scale-out: workers record themselves; a job group knows its try and the worker running it.

``workers`` has one row per ``flowport worker`` (its queues, concurrency and
heartbeat). ``job_groups`` gains ``tries`` (a retry after a lost worker
starts the next try of the same job group) and ``worker``, ``worker_host``,
``worker_pid`` (where the current try runs), so that a redelivered task can
tell a live worker's job from a dead one's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create workers; add job_groups.tries, worker, worker_host, worker_pid."""
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", _JSON, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", _TIMESTAMP, nullable=False),
        sa.Column("stopped_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("worker", sa.String(255), nullable=True))
        batch.add_column(sa.Column("worker_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("worker_pid")
        batch.drop_column("worker_host")
        batch.drop_column("worker")
        batch.drop_column("tries")
    op.drop_table("workers")
