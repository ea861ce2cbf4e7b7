"""Connections carry the seed's ``credentialsShared`` and ``disableTypeInference``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two flags with the seed's defaults (shared credentials, type inference on)."""
    op.add_column(
        "connections",
        sa.Column("credentials_shared", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "connections",
        sa.Column("disable_type_inference", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    """Drop the two flags."""
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("disable_type_inference")
        batch.drop_column("credentials_shared")
