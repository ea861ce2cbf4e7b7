"""The instance's domain: users and API tokens, projects, flows, parameter sets, job groups and jobs.

Creates the ``default`` project, which always exists.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from flowport.store.tables: a
# revision must keep describing the schema as it was, whatever the models become.
_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_STATUSES = "('Created', 'Pending', 'InProgress', 'Complete', 'Failed', 'Canceled')"


def _timestamps(*names: str, nullable: bool = False) -> list[sa.Column[datetime]]:
    return [sa.Column(name, _TIMESTAMP, nullable=nullable) for name in names]


def upgrade() -> None:
    """Create the domain tables and the ``default`` project."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.CheckConstraint("role IN ('admin', 'editor', 'viewer')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        *_timestamps("created_at"),
        *_timestamps("last_used_at", "revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "flows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("type IN ('batch', 'streaming')", name=op.f("ck_flows_type")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_flows_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flows")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_flows_project_id_name")),
        sa.UniqueConstraint("project_id", "uuid", name=op.f("uq_flows_project_id_uuid")),
    )
    op.create_index(op.f("ix_flows_project_id"), "flows", ["project_id"])
    op.create_table(
        "parameter_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("parameters", _JSON, nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.Column("updater_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_parameter_sets_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parameter_sets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_parameter_sets_project_id_name")),
    )
    op.create_index(op.f("ix_parameter_sets_project_id"), "parameter_sets", ["project_id"])
    op.create_table(
        "job_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow_id", sa.Integer(), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parameters", _JSON, nullable=False),
        sa.Column("result", _JSON, nullable=True),
        sa.Column("error", _LONG_TEXT, nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        *_timestamps("cancel_requested_at", nullable=True),
        *_timestamps("created_at", "updated_at"),
        *_timestamps("started_at", "finished_at", nullable=True),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(f"status IN {_STATUSES}", name=op.f("ck_job_groups_status")),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.id"], name=op.f("fk_job_groups_flow_id_flows"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_groups")),
        sa.UniqueConstraint("session_id", name=op.f("uq_job_groups_session_id")),
    )
    op.create_index(op.f("ix_job_groups_flow_id"), "job_groups", ["flow_id"])
    op.create_index(op.f("ix_job_groups_deployment_id"), "job_groups", ["deployment_id"])
    op.create_index(op.f("ix_job_groups_status"), "job_groups", ["status"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_group_id", sa.Integer(), nullable=False),
        sa.Column("flow_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metrics", _JSON, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("error", _LONG_TEXT, nullable=True),
        sa.Column("log", _LONG_TEXT, nullable=False),
        *_timestamps("created_at", "updated_at"),
        *_timestamps("started_at", "finished_at", nullable=True),
        sa.CheckConstraint(f"status IN {_STATUSES}", name=op.f("ck_jobs_status")),
        sa.ForeignKeyConstraint(
            ["job_group_id"],
            ["job_groups.id"],
            name=op.f("fk_jobs_job_group_id_job_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.id"], name=op.f("fk_jobs_flow_id_flows"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_job_group_id"), "jobs", ["job_group_id"])
    op.create_index(op.f("ix_jobs_flow_id"), "jobs", ["flow_id"])

    # The default project exists on every instance: flows created without a
    # project go there, and clients (the SDK) may rely on finding it.
    now = datetime.now(UTC)
    if op.get_bind().dialect.name != "postgresql":
        now = now.replace(tzinfo=None)  # the other databases keep naive UTC (see UTCDateTime)
    projects = sa.table(
        "projects",
        sa.column("name", sa.String()),
        sa.column("description", sa.Text()),
        sa.column("created_at", _TIMESTAMP),
        sa.column("updated_at", _TIMESTAMP),
    )
    op.bulk_insert(
        projects,
        [{"name": "default", "description": "The default project", "created_at": now, "updated_at": now}],
    )


def downgrade() -> None:
    """Drop the domain tables (and everything in them); 0001's tables stay."""
    op.drop_table("jobs")
    op.drop_table("job_groups")
    op.drop_table("parameter_sets")
    op.drop_table("flows")
    op.drop_table("projects")
    op.drop_table("api_tokens")
    op.drop_table("users")
