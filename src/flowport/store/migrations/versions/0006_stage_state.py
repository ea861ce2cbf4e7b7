"""Per-stage state (offsets, checkpoints) in the store, keyed by flow uuid, stage and partition.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

# As the tables are declared (migrations do not import the models, which keep changing).
_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``stage_state``."""
    op.create_table(
        "stage_state",
        sa.Column("flow_uuid", sa.Uuid(), nullable=False),
        sa.Column("stage_name", sa.String(255), nullable=False),
        sa.Column("partition", sa.String(255), nullable=False, server_default=""),
        sa.Column("state", _JSON, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("flow_uuid", "stage_name", "partition", name=op.f("pk_stage_state")),
    )


def downgrade() -> None:
    """Drop ``stage_state`` (the offsets are lost: the next runs read from the initial offset)."""
    op.drop_table("stage_state")
