"""Jobs for what comes next: trigger, schedule and logical date, heartbeat lease, attempt, an event outbox.

``job_groups`` gets ``triggered_by`` (manual, api, schedule, backfill, pipeline),
``schedule_id``, ``logical_date``, ``data_interval_start``/``end``,
``heartbeat_at`` and ``attempt``, a unique constraint on (``schedule_id``,
``logical_date``) — one run per schedule and logical date — and a foreign key
from ``deployment_id`` to ``deployments`` (``SET NULL``: a deleted
deployment's history stays). ``job_events`` is the outbox every status
change writes a row to, in the same transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    """Add the columns, constraints and the outbox table."""
    bind = op.get_bind()
    # Rows whose deployment was deleted would break the new foreign key: they keep their history.
    bind.execute(
        sa.text(
            "UPDATE job_groups SET deployment_id = NULL WHERE deployment_id IS NOT NULL "
            "AND deployment_id NOT IN (SELECT id FROM deployments)"
        )
    )
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("triggered_by", sa.String(16), nullable=False, server_default="manual"))
        batch.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("logical_date", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("data_interval_start", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("data_interval_end", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("heartbeat_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.create_check_constraint(
            "triggered_by", "triggered_by IN ('manual', 'api', 'schedule', 'backfill', 'pipeline')"
        )
        batch.create_unique_constraint(
            batch.f("uq_job_groups_schedule_id_logical_date"), ["schedule_id", "logical_date"]
        )
        batch.create_index(batch.f("ix_job_groups_schedule_id"), ["schedule_id"])
        batch.create_foreign_key(
            batch.f("fk_job_groups_deployment_id_deployments"),
            "deployments",
            ["deployment_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_group_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=False),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("at", _TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_group_id"],
            ["job_groups.id"],
            name=op.f("fk_job_events_job_group_id_job_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_job_events_job_group_id"), "job_events", ["job_group_id"])


def downgrade() -> None:
    """Drop the outbox and the columns (the job groups and their statuses stay)."""
    op.drop_table("job_events")
    with op.batch_alter_table(
        "job_groups", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(batch.f("fk_job_groups_deployment_id_deployments"), type_="foreignkey")
        batch.drop_index(batch.f("ix_job_groups_schedule_id"))
        batch.drop_constraint(batch.f("uq_job_groups_schedule_id_logical_date"), type_="unique")
        batch.drop_constraint("triggered_by", type_="check")
        for column in (
            "attempt",
            "heartbeat_at",
            "data_interval_end",
            "data_interval_start",
            "logical_date",
            "schedule_id",
            "triggered_by",
        ):
            batch.drop_column(column)
