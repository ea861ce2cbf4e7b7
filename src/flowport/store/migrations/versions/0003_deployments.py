"""Deployments, their releases and their import rules.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from flowport.store.tables: a
# revision must keep describing the schema as it was, whatever the models become.
_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_LONG_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def _timestamps(*names: str) -> list[sa.Column[datetime]]:
    return [sa.Column(name, _TIMESTAMP, nullable=False) for name in names]


def upgrade() -> None:
    """Create the deployments, releases and import_rules tables."""
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_deployments_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("name", name=op.f("uq_deployments_name")),
        sa.UniqueConstraint("project_id", name=op.f("uq_deployments_project_id")),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("package_uuid", sa.Uuid(), nullable=False),
        sa.Column("package_sha256", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("primary_flow_id", sa.Integer(), nullable=True),
        sa.Column("flows", _JSON, nullable=False),
        sa.Column("report", _JSON, nullable=False),
        sa.Column("package", _LONG_BLOB, nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_releases_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["primary_flow_id"],
            ["flows.id"],
            name=op.f("fk_releases_primary_flow_id_flows"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
    )
    op.create_index(op.f("ix_releases_deployment_id"), "releases", ["deployment_id"])
    op.create_table(
        "import_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("rule", _JSON, nullable=False),
        *_timestamps("created_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('object', 'value')", name=op.f("ck_import_rules_kind")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_import_rules_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_rules")),
        sa.UniqueConstraint(
            "deployment_id", "kind", "position", name=op.f("uq_import_rules_deployment_id_kind_position")
        ),
    )
    op.create_index(op.f("ix_import_rules_deployment_id"), "import_rules", ["deployment_id"])


def downgrade() -> None:
    """Drop the tables (and everything in them); the flows of the releases stay in their projects."""
    op.drop_table("import_rules")
    op.drop_table("releases")
    op.drop_table("deployments")
