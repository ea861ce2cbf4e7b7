"""Schedules, backfills and leases; one run per schedule, logical date and attempt.

``schedules`` hold a cron or preset in a timezone, the target (a flow, a
deployment, later a pipeline), start and end, catchup, max active runs,
paused, parameters and the scheduler's cursor (``next_logical_date``,
``next_run_at``). ``backfills`` create runs for past logical dates in order.
``leases`` hold the single active scheduler's lease. ``job_groups`` gets a
foreign key to its schedule (``SET NULL``: a deleted schedule's runs stay)
and its unique constraint gains ``attempt``, so a backfill may reprocess a
logical date as the next attempt while two schedulers still cannot create
the same attempt twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    """Create the tables and move the job groups' unique constraint."""
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("flow_id", sa.Integer(), nullable=True),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("pipeline_id", sa.Integer(), nullable=True),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_date", _TIMESTAMP, nullable=True),
        sa.Column("end_date", _TIMESTAMP, nullable=True),
        sa.Column("catchup", sa.Boolean(), nullable=False),
        sa.Column("max_active_runs", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("parameters", _JSON, nullable=False),
        sa.Column("next_logical_date", _TIMESTAMP, nullable=True),
        sa.Column("next_run_at", _TIMESTAMP, nullable=True),
        sa.Column("last_error", _LONG_TEXT, nullable=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "flow_id IS NOT NULL OR deployment_id IS NOT NULL OR pipeline_id IS NOT NULL",
            name=op.f("ck_schedules_target"),
        ),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.id"], name=op.f("fk_schedules_flow_id_flows"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_schedules_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_schedules_name")),
        sqlite_autoincrement=True,
    )
    for column in ("flow_id", "deployment_id", "pipeline_id", "next_run_at"):
        op.create_index(op.f(f"ix_schedules_{column}"), "schedules", [column])
    op.create_table(
        "backfills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("start_date", _TIMESTAMP, nullable=False),
        sa.Column("end_date", _TIMESTAMP, nullable=False),
        sa.Column("reprocess", sa.String(8), nullable=False),
        sa.Column("max_active_runs", sa.Integer(), nullable=False),
        sa.Column("next_logical_date", _TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("creator_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('Running', 'Complete', 'Canceled')", name=op.f("ck_backfills_status")),
        sa.CheckConstraint("reprocess IN ('none', 'failed', 'all')", name=op.f("ck_backfills_reprocess")),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_backfills_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_backfills_schedule_id"), "backfills", ["schedule_id"])
    op.create_index(op.f("ix_backfills_status"), "backfills", ["status"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", _TIMESTAMP, nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    bind = op.get_bind()
    # Runs of schedules that never existed would break the new foreign key.
    bind.execute(sa.text("UPDATE job_groups SET schedule_id = NULL WHERE schedule_id IS NOT NULL"))
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(batch.f("uq_job_groups_schedule_id_logical_date"), type_="unique")
        batch.create_unique_constraint(
            batch.f("uq_job_groups_schedule_id_logical_date_attempt"),
            ["schedule_id", "logical_date", "attempt"],
        )
        batch.create_foreign_key(
            batch.f("fk_job_groups_schedule_id_schedules"),
            "schedules",
            ["schedule_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    """Drop the tables; job groups keep one run per schedule and logical date."""
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(batch.f("fk_job_groups_schedule_id_schedules"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_job_groups_schedule_id_logical_date_attempt"), type_="unique")
        batch.create_unique_constraint(
            batch.f("uq_job_groups_schedule_id_logical_date"), ["schedule_id", "logical_date"]
        )
    op.drop_table("leases")
    op.drop_table("backfills")
    op.drop_table("schedules")
